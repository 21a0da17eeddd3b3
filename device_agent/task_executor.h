#ifndef FEDGE_DEVICE_AGENT_TASK_EXECUTOR_H_
#define FEDGE_DEVICE_AGENT_TASK_EXECUTOR_H_

// What runs a task for the agent loop (agent_loop.h): local training on a
// worker thread in the agent binary (ThreadedExecutor), the same run inline
// in benchmarks (InlineExecutor), a synthetic answer in fleet simulations
// (testing/synthetic_executor.h). One task at a time.
//
//   InlineExecutor executor([&runner](const Task& t) { return runner.Run(t); });
//   AgentLoop loop(transport.get(), &executor, options);
//
// Not thread-safe: owned by the agent loop's thread (a ThreadedExecutor's
// worker touches only its own task).

#include <atomic>
#include <functional>
#include <future>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/wire/messages.h"

namespace fedge {

class TaskExecutor {
 public:
  virtual ~TaskExecutor() = default;
  // Begins `task`; called only when idle.
  virtual void Start(const Task& task, absl::Time now) = 0;
  // The outcome of the task started last, once, when it is finished;
  // nullopt while it runs or when idle.
  virtual std::optional<absl::StatusOr<TaskResult>> Poll(absl::Time now) = 0;
  // Asks the running task to stop after the step in flight, and waits for
  // it; Poll then returns its outcome.
  virtual void CancelAndWait() {}
};

// Runs `run` inside Start: for in-process simulations and benchmarks.
class InlineExecutor : public TaskExecutor {
 public:
  using RunFn = std::function<absl::StatusOr<TaskResult>(const Task&)>;
  explicit InlineExecutor(RunFn run) : run_(std::move(run)) {}

  void Start(const Task& task, absl::Time) override { outcome_ = run_(task); }
  std::optional<absl::StatusOr<TaskResult>> Poll(absl::Time) override {
    std::optional<absl::StatusOr<TaskResult>> out = std::move(outcome_);
    outcome_.reset();
    return out;
  }

 private:
  RunFn run_;
  std::optional<absl::StatusOr<TaskResult>> outcome_;
};

// Runs `run` on a worker thread so the agent keeps heartbeating while it
// trains; `run` gets a flag it must check between steps.
class ThreadedExecutor : public TaskExecutor {
 public:
  using RunFn = std::function<absl::StatusOr<TaskResult>(const Task&, const std::atomic<bool>*)>;
  explicit ThreadedExecutor(RunFn run) : run_(std::move(run)) {}
  ~ThreadedExecutor() override { CancelAndWait(); }

  void Start(const Task& task, absl::Time) override {
    cancel_ = false;
    running_ = std::async(std::launch::async, [this, task] { return run_(task, &cancel_); });
  }
  std::optional<absl::StatusOr<TaskResult>> Poll(absl::Time) override {
    if (!running_.valid() ||
        running_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
      return std::nullopt;
    }
    return running_.get();
  }
  void CancelAndWait() override {
    cancel_ = true;
    if (running_.valid()) running_.wait();
  }

 private:
  RunFn run_;
  std::atomic<bool> cancel_{false};
  std::future<absl::StatusOr<TaskResult>> running_;
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_TASK_EXECUTOR_H_
