#include "coordinator/shard_planner.h"

#include <algorithm>

namespace fedge {

ShardPlanner MakeMemoryPlanner(const ModelSpec& spec, int batch) {
  return [spec, batch](const AgentRecord& agent) -> std::optional<ShardPlan> {
    const int64_t budget = static_cast<int64_t>(agent.registration.memory_budget_bytes);
    const int layers = spec.layer_count();
    for (int from = 0; from < layers; ++from) {
      if (spec.TrainingMemory(from, batch) <= budget) {
        return ShardPlan{static_cast<uint32_t>(from), 0};
      }
    }
    for (int b = batch / 2; b >= kMinPlanBatch; b /= 2) {
      if (spec.TrainingMemory(layers - 1, b) <= budget) {
        return ShardPlan{static_cast<uint32_t>(layers - 1), static_cast<uint32_t>(b)};
      }
    }
    return std::nullopt;
  };
}

}  // namespace fedge
