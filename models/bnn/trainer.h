#ifndef FEDGE_MODELS_TRAINER_H_
#define FEDGE_MODELS_TRAINER_H_

// The local training loop: shuffled mini-batches, cross-entropy, backward,
// optimizer step; measures speed and memory as it goes. Memory comes from two
// instruments: the network's MemoryLedger (what its layers say they saved)
// and, when installed, the CountingCpuAllocator (every tensor byte that is
// live after the forward pass), so nothing saved behind the ledger's back
// goes unseen.
//
// Not thread-safe.

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "common/schedule/learning_rate.h"
#include "models/data/dataset.h"
#include "models/bnn/trainable_net.h"

namespace fedge {

struct TrainOptions {
  int epochs = 1;
  int batch_size = 100;
  int64_t max_steps = -1;  // stop early after this many steps (-1: no limit)
  uint64_t seed = 1;
  // Cosine: the learning rate of step t is learning_rate * LrFactor(t, T)
  // over the T steps this call will run (learning_rate must be positive).
  LrSchedule lr_schedule = LrSchedule::kConstant;
  double learning_rate = 0;
  // > 0: a fresh optimizer every this many steps, as agents start one per
  // task (the cost of short tasks, measured centrally).
  int64_t reset_optimizer_every = 0;
};

struct EpochProgress {
  int epoch = 0;
  int epochs = 0;
  double loss = 0;
  double accuracy = 0;
  double samples_per_second = 0;
  double eta_seconds = 0;
};

struct TrainReport {
  int64_t steps = 0;
  int64_t samples = 0;
  double seconds = 0;
  double samples_per_second = 0;
  double loss = 0;            // mean over the last epoch
  double train_accuracy = 0;  // over the last epoch
  // Allocator-measured bytes live after forward that were not live before
  // it (the batch itself excluded), maximum over steps: what autograd holds
  // for backward. 0 when the counting allocator is not installed.
  int64_t held_for_backward_bytes = 0;
  // Allocator peak during a step above the bytes live before it (forward,
  // backward and optimizer transients included), maximum over steps.
  int64_t step_peak_bytes = 0;
};

using ProgressFn = std::function<void(const EpochProgress&)>;

absl::StatusOr<TrainReport> Train(TrainableNet& net, const Dataset& data,
                                  const TrainOptions& options,
                                  const ProgressFn& progress = nullptr);

// Top-1 accuracy in evaluation mode.
absl::StatusOr<double> Evaluate(TrainableNet& net, const Dataset& data,
                                int batch_size = 500);

// Prints "epoch i/n  loss  acc  samples/s  ETA" to stderr.
void PrintProgress(const std::string& label, const EpochProgress& p);

}  // namespace fedge

#endif  // FEDGE_MODELS_TRAINER_H_
