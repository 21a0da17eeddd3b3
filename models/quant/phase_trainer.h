#ifndef FEDGE_MODELS_PHASE_TRAINER_H_
#define FEDGE_MODELS_PHASE_TRAINER_H_

// Runs one phase of the three-phase schedule (design 4.1) on a QuantNet,
// for a number of steps. This is what a device agent calls for one round; it
// knows nothing of networking.
//
//   pretrain         fixed precision: quantizers calibrated (optionally) at
//                    `pretrain_bits`, then frozen; no size penalty
//   learn precision  weights update every step, quantizer steps and ranges
//                    every `quantizer_every`-th step (by default every step,
//                    in log scale: each update multiplies d and xmax by a
//                    factor); penalty on, ramped over the first half; the
//                    best state meeting both budgets is kept and restored at
//                    the end
//   finetune         bit-widths frozen, penalty off; a model that comes in
//                    over its budget (the learn phase ended above it, or
//                    federated averaging of steps moved it there) is first
//                    projected onto it (QuantNet::ProjectToBudget), so the
//                    finetune steps adapt the weights to the codes it keeps
//
// Not thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/statusor.h"
#include "common/schedule/learning_rate.h"
#include "common/wire/messages.h"
#include "models/data/dataset.h"
#include "models/quant/quant_net.h"
#include "models/quant/size_model.h"

namespace fedge {

struct PhaseConfig {
  Phase phase = Phase::kPretrain;
  int64_t steps = 100;
  int batch_size = 64;
  double learning_rate = 1e-3;
  // The weights' rate over this call's steps (a central run; a federated
  // round's rate comes from the coordinator, already scaled for its round).
  LrSchedule lr_schedule = LrSchedule::kConstant;
  // Adam on log d and log xmax (relative steps), or, false, on d and xmax
  // themselves (the seed's update, whose absolute steps collapse bit-widths).
  bool quantizer_log_scale = true;
  double quantizer_learning_rate = 1e-2;
  int quantizer_every = 1;
  Budget budget;
  // The ramp position at the start, for a phase split across several calls
  // (federated rounds): s(t) is computed at step_offset + t of phase_steps.
  int64_t step_offset = 0;
  int64_t phase_steps = 0;  // 0: this call's steps
  double ramp = -1;         // >= 0: a fixed s(t) (the coordinator's, per round)
  bool calibrate = false;   // pretrain: initialise quantizers first
  // Learn precision: start within the budget (the projection finetune always
  // runs first), so the phase redistributes bits from there instead of
  // descending from the pretrain precision.
  bool project_first = false;
  int pretrain_bits = 8;
  // Binary networks: keep the optimizer's moments and step count from the
  // previous call (an agent's previous task) instead of a fresh Adam.
  bool keep_optimizer_state = false;
  uint64_t seed = 1;
  // Checked before every step: when it turns true the phase stops with
  // kCancelled (an agent shutting down).
  const std::atomic<bool>* cancel = nullptr;
};

struct PhaseReport {
  int64_t steps = 0;
  double loss = 0;      // mean over the last quarter of the steps
  double accuracy = 0;  // training accuracy over the same steps
  double penalty = 0;   // last step's size penalty
  SizeReport size;
  bool met_budget = false;    // learn precision: a state met both budgets
  bool restored_best = false;
  // Finetune: bits taken by the projection onto the budget at the start,
  // and given back where its last cut overshot.
  int projected_weight_bits = 0;
  int projected_activation_bits = 0;
  int refilled_weight_bits = 0;
  int refilled_activation_bits = 0;
  double seconds = 0;
};

using PhaseProgressFn = std::function<void(int64_t step, double loss, double accuracy)>;

absl::StatusOr<PhaseReport> RunPhase(QuantNet& net, const Dataset& data,
                                     const PhaseConfig& config,
                                     const PhaseProgressFn& progress = nullptr);

// Top-1 accuracy in evaluation mode.
absl::StatusOr<double> EvaluateQuant(QuantNet& net, const Dataset& data,
                                     int batch_size = 500);

}  // namespace fedge

#endif  // FEDGE_MODELS_PHASE_TRAINER_H_
