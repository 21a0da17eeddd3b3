#ifndef FEDGE_DEVICE_AGENT_TESTING_SYNTHETIC_EXECUTOR_H_
#define FEDGE_DEVICE_AGENT_TESTING_SYNTHETIC_EXECUTOR_H_

// A task executor that skips training: it answers every task, after a set
// training time, with an update of `value` on every element of every shard
// it was sent, so the aggregate a round must produce is known exactly.
// Large shards go up as sign-ef (exact for a constant delta), small ones as
// fp32, as real agents send them. A non-finite `value` is written into the
// fp32 bytes directly, as a broken agent would send it (encoders refuse).
// For fleet simulations, tests and the scale benchmark.
//
//   SyntheticExecutor executor({.value = 1.0f, .samples = 100});
//   AgentLoop loop(transport.get(), &executor, options);
//
// Not thread-safe.

#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "common/codec/update_codec.h"
#include "device_agent/task_executor.h"

namespace fedge {

struct SyntheticTaskOptions {
  float value = 1.0f;
  uint64_t samples = 100;
  absl::Duration train_time = absl::ZeroDuration();
  // Shards with at least this many elements go up as sign-ef.
  int64_t sign_ef_from = kSmallTensorElements;
  uint64_t peak_memory_bytes = 0;
  // last_task() keeps the shards' bytes too (a load generator with
  // thousands of agents keeps only the headers).
  bool keep_task_payloads = true;
  // Encode each (shard shape, codec, value) once per process and send those
  // bytes from then on: every agent of a load test sends the same update
  // (sign-ef of a constant is exact: no residual carries over), and the
  // generator's cores go to the protocol, not to re-encoding it.
  bool reuse_encoded_updates = false;
};

class SyntheticExecutor : public TaskExecutor {
 public:
  explicit SyntheticExecutor(const SyntheticTaskOptions& options) : options_(options) {}

  void Start(const Task& task, absl::Time now) override;
  std::optional<absl::StatusOr<TaskResult>> Poll(absl::Time now) override;

  void set_value(float value) { options_.value = value; }
  // The task started last (its shards included), for tests that answer by
  // hand.
  const std::optional<Task>& last_task() const { return last_task_; }

 private:
  SyntheticTaskOptions options_;
  std::optional<Task> last_task_;
  std::optional<TaskResult> result_;
  absl::Time ready_;
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_TESTING_SYNTHETIC_EXECUTOR_H_
