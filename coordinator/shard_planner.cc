#include "coordinator/shard_planner.h"

#include <algorithm>

namespace fedge {

ShardPlanner MakeMemoryPlanner(const QuantArch& arch, int batch) {
  return [arch, batch](const AgentRecord& agent) -> std::optional<ShardPlan> {
    const int64_t budget = static_cast<int64_t>(agent.registration.memory_budget_bytes);
    const int layers = static_cast<int>(arch.layers.size());
    for (int from = 0; from < layers; ++from) {
      if (QuantTrainingMemory(arch, from, batch) <= budget) {
        return ShardPlan{static_cast<uint32_t>(from), 0};
      }
    }
    for (int b = batch / 2; b >= kMinPlanBatch; b /= 2) {
      if (QuantTrainingMemory(arch, layers - 1, b) <= budget) {
        return ShardPlan{static_cast<uint32_t>(layers - 1), static_cast<uint32_t>(b)};
      }
    }
    return std::nullopt;
  };
}

}  // namespace fedge
