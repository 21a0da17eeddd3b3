#ifndef FEDGE_DEVICE_AGENT_TASK_RUNNER_H_
#define FEDGE_DEVICE_AGENT_TASK_RUNNER_H_

// Runs one task on the device: loads the task's shards into the local
// network (either family: models/family/federated_model.h), freezes the
// layers before the task's trainable suffix, trains on the local data (one
// phase of the schedule for a mixed-precision network, memory-saving
// backprop for a binary one), and encodes the update of every trained shard
// with the codec the task names, keeping the sign-ef residual across rounds
// (on disk when a path is given). Reports the training memory it measured,
// the process's peak RSS during the task, the accuracy on the held-out
// share of its data (training accuracy when it has none), and the time it
// took.
//
// Not thread-safe: one task at a time.

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/env/env.h"
#include "common/wire/messages.h"
#include "common/codec/update_codec.h"
#include "models/data/dataset.h"
#include "models/family/federated_model.h"

namespace fedge {

struct TaskRunnerOptions {
  std::string residual_path;  // "" keeps the residual in memory only
  Env* env = Env::Default();  // where the residual file is written
  // Tensors smaller than this travel as fp32 (update_codec.h).
  int64_t small_tensor_elements = kSmallTensorElements;
  // Binary networks: Adam's moments carry over from one task to the next.
  bool keep_optimizer_state = false;
};

class TaskRunner {
 public:
  // `held_out` may be empty.
  TaskRunner(std::unique_ptr<FederatedModel> model, Dataset data, Dataset held_out,
             const TaskRunnerOptions& options);

  // Loads the persisted residual, if any. A missing file is fine; a corrupt
  // one is reported and the residual starts from zero.
  absl::Status LoadResidual();

  // `cancel` (optional) stops training between two steps with kCancelled.
  absl::StatusOr<TaskResult> Run(const Task& task, const std::atomic<bool>* cancel = nullptr);

  int64_t samples() const { return data_.size(); }
  // Why the residual of the last task was not saved (the file keeps the one
  // before); OK when it was.
  const absl::Status& residual_error() const { return residual_error_; }

 private:
  std::unique_ptr<FederatedModel> model_;
  Dataset data_;
  Dataset held_out_;
  TaskRunnerOptions options_;
  ErrorFeedback feedback_;
  absl::Status residual_error_;
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_TASK_RUNNER_H_
