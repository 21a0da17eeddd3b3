#include "coordinator/shard_planner.h"

#include <algorithm>

namespace fedge {

int64_t TrainingMemoryEstimate(const QuantArch& arch, int trainable_from, int batch) {
  int64_t bytes = int64_t{2} << 20;  // LibTorch scratch
  int64_t transient = 0;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const QuantLayerSpec& l = arch.layers[i];
    const int64_t out = int64_t{l.out_channels} * l.out_height * l.out_width;
    transient = std::max(transient, 4 * (l.input_elements() + 2 * out));
    if (static_cast<int>(i) < trainable_from) {
      bytes += 12 * l.weight_count();
    } else {
      bytes += 52 * l.weight_count() + batch * (l.input_elements() * 9 / 8 + 12 * out);
    }
  }
  return bytes + batch * transient;
}

ShardPlanner MakeMemoryPlanner(const QuantArch& arch, int batch) {
  return [arch, batch](const AgentRecord& agent) -> std::optional<ShardPlan> {
    const int64_t budget = static_cast<int64_t>(agent.registration.memory_budget_bytes);
    const int layers = static_cast<int>(arch.layers.size());
    for (int from = 0; from < layers; ++from) {
      if (TrainingMemoryEstimate(arch, from, batch) <= budget) {
        return ShardPlan{static_cast<uint32_t>(from), 0};
      }
    }
    for (int b = batch / 2; b >= kMinPlanBatch; b /= 2) {
      if (TrainingMemoryEstimate(arch, layers - 1, b) <= budget) {
        return ShardPlan{static_cast<uint32_t>(layers - 1), static_cast<uint32_t>(b)};
      }
    }
    return std::nullopt;
  };
}

}  // namespace fedge
