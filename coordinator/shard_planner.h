#ifndef FEDGE_COORDINATOR_SHARD_PLANNER_H_
#define FEDGE_COORDINATOR_SHARD_PLANNER_H_

// Plans what each agent trains from its registered memory budget (design
// 4.3): the largest trainable suffix of layers whose training memory fits,
// earlier layers frozen; when even the last layer alone does not fit at the
// run's batch size, the batch is halved (down to kMinPlanBatch); when it
// still does not fit, the agent is given no tasks.
//
// The training-memory estimate is models/memory's QuantTrainingMemory, the
// same model memory_report prints, calibrated against the agents' measured
// peaks.
//
//   ShardPlanner planner = MakeMemoryPlanner(arch, /*batch=*/64);
//   std::optional<ShardPlan> plan = planner(agent);

#include <cstdint>

#include "coordinator/round_engine.h"
#include "models/memory/memory_model.h"
#include "models/quant/quant_arch.h"

namespace fedge {

inline constexpr int kMinPlanBatch = 8;


ShardPlanner MakeMemoryPlanner(const QuantArch& arch, int batch);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SHARD_PLANNER_H_
