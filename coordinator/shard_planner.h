#ifndef FEDGE_COORDINATOR_SHARD_PLANNER_H_
#define FEDGE_COORDINATOR_SHARD_PLANNER_H_

// Plans what each agent trains from its registered memory budget (design
// 4.3): the largest trainable suffix of layers whose training memory fits,
// earlier layers frozen; when even the last layer alone does not fit at the
// run's batch size, the batch is halved (down to kMinPlanBatch); when it
// still does not fit, the agent is given no tasks.
//
// The budget is training memory, not the process: the estimate
// (ModelSpec::TrainingMemory, models/memory's QuantTrainingMemory or
// BinaryTrainingMemory, the same models memory_report prints) is what one
// task's training allocates, calibrated against the peak the agents measure
// with their counting allocator (device_agent/planner_calibration_test.cc:
// at least the measured peak, at most 1.5x it for the binary networks). The
// process needs the libraries' baseline and the local data on top (the
// agents report their process peak RSS beside it: the status table and the
// run's summary show both).
//
//   ShardPlanner planner = MakeMemoryPlanner(arch, /*batch=*/64);
//   std::optional<ShardPlan> plan = planner(agent);

#include <cstdint>

#include "coordinator/round_engine.h"
#include "models/family/model_spec.h"

namespace fedge {

inline constexpr int kMinPlanBatch = 8;


ShardPlanner MakeMemoryPlanner(const ModelSpec& spec, int batch);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SHARD_PLANNER_H_
