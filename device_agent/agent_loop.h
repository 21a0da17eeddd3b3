#ifndef FEDGE_DEVICE_AGENT_AGENT_LOOP_H_
#define FEDGE_DEVICE_AGENT_AGENT_LOOP_H_

// The agent's one event loop: tick the session, receive and decode what the
// coordinator sent, hand a new task to the executor, deliver a finished
// task's result (kept until acknowledged) or report its failure, register
// again when the link was re-established. The agent binary runs it over
// ZeroMQ with a worker-thread executor; fleet simulations, tests and
// benchmarks run the very same loop over in-memory, faulty or rate-limited
// transports with an inline or synthetic executor.
//
//   AgentLoop loop(transport.get(), &executor, {session_options, log});
//   while (!stop) loop.Step(absl::Now(), absl::Milliseconds(50));
//   loop.Stop(absl::Now(), "agent stopping (SIGTERM)");
//
// Not thread-safe: one thread steps it (the transport's).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "common/wire/messages.h"
#include "common/transport/transport.h"
#include "device_agent/session.h"
#include "device_agent/task_executor.h"

namespace fedge {

struct AgentLoopOptions {
  SessionOptions session;
  // One line per notable event (without the "[device]" prefix, which the
  // loop adds); null: silent.
  std::function<void(const std::string&)> log;
  // Packets handled per Step at most (the first waited for, the rest not).
  int max_packets_per_step = 64;
  // Moves the link to the next endpoint (FailoverTransport::Failover), when
  // nothing has come from the current one for `failover_after` (a dead
  // relay); null: one endpoint, the session's own timeouts only. It must
  // exceed the longest task download, as the coordinator timeout does.
  std::function<absl::Status()> fail_over;
  absl::Duration failover_after = absl::Seconds(90);
};

class AgentLoop {
 public:
  // `transport` and `executor` must outlive the loop.
  AgentLoop(Transport* transport, TaskExecutor* executor, AgentLoopOptions options);

  // One turn, waiting up to `wait` for the first packet.
  void Step(absl::Time now, absl::Duration wait);
  // Stops the running task after its step in flight and reports it failed
  // with `reason`, so the coordinator counts it out of the round at once.
  void Stop(absl::Time now, const std::string& reason);

  const AgentSession& session() const { return session_; }
  bool busy() const { return current_.has_value(); }
  int64_t bad_messages() const { return bad_messages_; }
  int64_t tasks_run() const { return tasks_run_; }
  int64_t failovers() const { return failovers_; }

 private:
  void Send(const Message& m);
  void Log(const std::string& line) const;
  void Handle(Message m, absl::Time now);

  Transport* transport_;
  TaskExecutor* executor_;
  AgentLoopOptions options_;
  AgentSession session_;
  std::optional<Task> current_;
  int64_t connections_ = 0;
  absl::Time last_received_ = absl::InfinitePast();
  int64_t bad_messages_ = 0;
  int64_t tasks_run_ = 0;
  int64_t failovers_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_AGENT_LOOP_H_
