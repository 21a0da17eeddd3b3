#ifndef FEDGE_DEVICE_AGENT_DRIFT_H_
#define FEDGE_DEVICE_AGENT_DRIFT_H_

// Client-drift correction at no cost in bytes: SCAFFOLD's control variates
// (Karimireddy et al. 2020, option II), measured in the local optimizer's
// displacements instead of gradients, and recovered from what the agent
// already has when it takes part in consecutive rounds.
//
// An agent i that trained K steps at rate lr from the global model x_{t-1}
// to y_i sent D_i = y_i - x_{t-1}. The next global model is
// x_t = x_{t-1} + s * mean_j D_j (server rate s, mean weighted as the
// coordinator weighs updates), so mean_j D_j = (x_t - x_{t-1}) / s: every
// agent can tell the fleet's mean displacement from two downlinks. Each
// local step of the next task is then followed by the shift
//     (mean_j D_j - D_i) / K * (lr_t / lr_{t-1})
// which pulls the agent's trajectory towards the fleet's (its average over
// the agents is zero): the local data's bias, measured one round late,
// is taken out of every step. D_i counts only the optimizer's own steps:
// the shifts the agent applied in its last task are taken out of it (they
// cancel over the fleet, so the global displacement holds none). The
// agent keeps one model-sized vector between tasks,
// b_i = x_{t-1} / s + D_i, and shift = (x_t / s - b_i) / K * (lr_t / lr_{t-1}).
//
// Only between consecutive versions of the global model with the same
// trainable layers: after a missed round, a new shard plan or a restart, the
// next task runs without a shift and records afresh. The running statistics
// of the norms are carried in b but their shifts are ignored by the model
// (models/family/federated_model.h).
//
// Not thread-safe: the task runner's.

#include <cstdint>
#include <vector>

#include "common/wire/model_shard.h"

namespace fedge {

class DriftCorrection {
 public:
  // `server_rate` s > 0.
  explicit DriftCorrection(double server_rate) : server_rate_(server_rate) {}

  // The per-step shifts for a task starting from `global` (the task's model,
  // version `version`, trainable from layer `trainable_from`, at rate
  // `learning_rate`); empty when there is no previous round to correct
  // with.
  std::vector<ModelShard> Shifts(const std::vector<ModelShard>& global, uint64_t version,
                                 uint32_t trainable_from, double learning_rate) const;

  // After the task: `global` as above, `local` the trained model, `steps`
  // the steps it took, `shifts` what Shifts gave for it (the agent's own
  // displacement is counted without them, as SCAFFOLD's option II does).
  void Record(const std::vector<ModelShard>& global, const std::vector<ModelShard>& local,
              const std::vector<ModelShard>& shifts, uint64_t version, uint32_t trainable_from,
              int64_t steps, double learning_rate);

  // What is held between tasks.
  int64_t bytes() const;

 private:
  double server_rate_;
  bool recorded_ = false;
  uint64_t version_ = 0;
  uint32_t trainable_from_ = 0;
  int64_t steps_ = 0;
  double learning_rate_ = 0;
  std::vector<ModelShard> anchor_;  // b_i, trainable shards only
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_DRIFT_H_
