#ifndef FEDGE_DEVICE_AGENT_SESSION_H_
#define FEDGE_DEVICE_AGENT_SESSION_H_

// The agent's side of the connection: register until welcomed (retrying
// with a growing back-off), then heartbeat; register again when the
// coordinator says the session is not current (it restarted) or when it has
// been silent too long (it went away). Tasks that arrive are queued for the
// task runner, whatever session they were sent under, each task id once: a
// task is never lost to a re-registration. A result is kept and sent again
// (after a new Welcome, and every `result_retry`) until the coordinator
// acknowledges it. Pure: takes `now` and decoded messages, returns the
// messages to send; the agent's main loop does the I/O.
//
//   AgentSession session(options);
//   for (;;) {
//     for (Message& m : session.OnTick(Now())) Send(m);
//     if (auto in = Receive()) for (Message& m : session.OnMessage(*in, Now())) Send(m);
//     if (auto task = session.TakeTask()) for (Message& m : session.Deliver(Run(*task), Now())) Send(m);
//   }
//
// Not thread-safe.

#include <cstdint>
#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/wire/messages.h"

namespace fedge {

struct SessionOptions {
  std::string device_id;
  Register registration;
  // First wait between Registers; it doubles up to `max_register_retry`
  // while no Welcome comes (a slow link must not drown in Registers).
  absl::Duration register_retry = absl::Seconds(1);
  absl::Duration max_register_retry = absl::Seconds(30);
  // No word from the coordinator for this long: it is gone, register again.
  // Over a slow link a task download holds everything behind it: this must
  // exceed the longest download (853 kB at 256 kbit/s takes ~27 s).
  absl::Duration coordinator_timeout = absl::Seconds(90);
  // An unacknowledged result is sent again this often.
  absl::Duration result_retry = absl::Seconds(30);
};

class AgentSession {
 public:
  enum class State { kRegistering, kReady };

  explicit AgentSession(SessionOptions options);

  std::vector<Message> OnTick(absl::Time now);
  // Takes the message: a task's shards move into the queue, not copied (a
  // board holds one copy of the model it was sent, not two).
  std::vector<Message> OnMessage(Message message, absl::Time now);

  // The next task the coordinator sent, if any.
  std::optional<Task> TakeTask();
  // Sends a finished task's result now and keeps it until acknowledged.
  std::vector<Message> Deliver(TaskResult result, absl::Time now);
  // The result still waiting for its acknowledgement, if any.
  const std::optional<TaskResult>& unacknowledged() const { return result_; }
  // The transport re-established its connection: whatever was in flight
  // either way may be lost, so register again now, on the new connection
  // (the coordinator then sends the outstanding task again, and the result
  // waiting for its acknowledgement goes out once welcomed).
  void OnReconnected(absl::Time now);
  // Reported in heartbeats; 0 when idle.
  void SetBusy(uint64_t task_id) { busy_task_ = task_id; }
  // A relay's upstream session: its load goes in every Register (as the
  // registration's samples and memory budget too) and heartbeat.
  void SetRelayLoad(const RelayLoad& load) { relay_load_ = load; }
  // `body` in an envelope of this device and session.
  Message Wrap(Body body) const;

  State state() const { return state_; }
  uint64_t session_id() const { return session_id_; }
  int registrations_sent() const { return registrations_sent_; }
  int results_sent() const { return results_sent_; }
  // Why the coordinator last refused us, for the log.
  const std::string& last_reject() const { return last_reject_; }

 private:
  Message RegisterNow(absl::Time now);
  bool Seen(uint64_t task_id);

  SessionOptions options_;
  State state_ = State::kRegistering;
  uint64_t session_id_ = 0;
  absl::Duration heartbeat_interval_ = absl::Seconds(1);
  absl::Time last_register_ = absl::InfinitePast();
  absl::Time last_heartbeat_ = absl::InfinitePast();
  absl::Time last_heard_ = absl::InfinitePast();
  uint64_t busy_task_ = 0;
  std::optional<RelayLoad> relay_load_;
  absl::Duration register_wait_;
  bool new_connection_ = true;  // the next Register is the first on its connection
  int registrations_sent_ = 0;
  std::string last_reject_;
  std::deque<Task> tasks_;
  std::deque<uint64_t> seen_tasks_;  // the most recent task ids, oldest first
  std::optional<TaskResult> result_;
  absl::Time result_sent_ = absl::InfinitePast();
  uint64_t result_session_ = 0;  // the session it was last sent in
  int results_sent_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_SESSION_H_
