#ifndef FEDGE_COORDINATOR_SHARD_PLANNER_H_
#define FEDGE_COORDINATOR_SHARD_PLANNER_H_

// Plans what each agent trains from its registered memory budget (design
// 4.3): the largest trainable suffix of layers whose training memory fits,
// earlier layers frozen; when even the last layer alone does not fit at the
// run's batch size, the batch is halved (down to kMinPlanBatch); when it
// still does not fit, the agent is given no tasks.
//
// The training-memory estimate of a task training layers [from, end):
//   frozen layers: 12 B per weight (the float32 weight, its quantized copy
//     and one temporary of the quantizer);
//   trainable layers: 52 B per weight (weight, gradient, two Adam moments
//     and Adam's temporaries, the quantized copy and the quantizer
//     backward's temporaries: about 13 float copies, measured), plus per
//     sample what backward keeps: the packed input codes and mask (9/8 B per
//     input element) and the float saves of batch norm, ReLU and pooling
//     (12 B per output element);
//   the forward pass's float transients: per sample, the largest layer's
//     input plus two of its outputs;
//   a fixed 2 MB for LibTorch's scratch buffers.
// It is calibrated against the peak the agent measures with its counting
// allocator (device_agent/planner_calibration_test.cc checks that it bounds
// the measured peak and is not more than twice it).
//
//   ShardPlanner planner = MakeMemoryPlanner(arch, /*batch=*/64);
//   std::optional<ShardPlan> plan = planner(agent);

#include <cstdint>

#include "coordinator/round_engine.h"
#include "models/quant/quant_arch.h"

namespace fedge {

inline constexpr int kMinPlanBatch = 8;

int64_t TrainingMemoryEstimate(const QuantArch& arch, int trainable_from, int batch);

ShardPlanner MakeMemoryPlanner(const QuantArch& arch, int batch);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SHARD_PLANNER_H_
