#ifndef FEDGE_DEVICE_AGENT_SESSION_H_
#define FEDGE_DEVICE_AGENT_SESSION_H_

// The agent's side of the connection: register until welcomed, then
// heartbeat; register again when the coordinator says the session is not
// current (it restarted) or when it has been silent too long (it went away).
// Tasks that arrive are queued for the task runner. Pure: takes `now` and
// decoded messages, returns the messages to send; the agent's main loop does
// the I/O.
//
//   AgentSession session(options);
//   for (;;) {
//     for (Message& m : session.OnTick(Now())) Send(m);
//     if (auto in = Receive()) for (Message& m : session.OnMessage(*in, Now())) Send(m);
//     if (auto task = session.TakeTask()) Run(*task);
//   }
//
// Not thread-safe.

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/messages.h"

namespace fedge {

struct SessionOptions {
  std::string device_id;
  Register registration;
  absl::Duration register_retry = absl::Seconds(1);
  // No word from the coordinator for this long: it is gone, register again.
  absl::Duration coordinator_timeout = absl::Seconds(10);
};

class AgentSession {
 public:
  enum class State { kRegistering, kReady };

  explicit AgentSession(SessionOptions options);

  std::vector<Message> OnTick(absl::Time now);
  std::vector<Message> OnMessage(const Message& message, absl::Time now);

  // The next task the coordinator sent, if any.
  std::optional<Task> TakeTask();
  // Reported in heartbeats; 0 when idle.
  void SetBusy(uint64_t task_id) { busy_task_ = task_id; }
  // `body` in an envelope of this device and session.
  Message Wrap(Body body) const;

  State state() const { return state_; }
  uint64_t session_id() const { return session_id_; }
  int registrations_sent() const { return registrations_sent_; }
  // Why the coordinator last refused us, for the log.
  const std::string& last_reject() const { return last_reject_; }

 private:
  Message RegisterNow(absl::Time now);

  SessionOptions options_;
  State state_ = State::kRegistering;
  uint64_t session_id_ = 0;
  absl::Duration heartbeat_interval_ = absl::Seconds(1);
  absl::Time last_register_ = absl::InfinitePast();
  absl::Time last_heartbeat_ = absl::InfinitePast();
  absl::Time last_heard_ = absl::InfinitePast();
  uint64_t busy_task_ = 0;
  int registrations_sent_ = 0;
  std::string last_reject_;
  std::deque<Task> tasks_;
};

}  // namespace fedge

#endif  // FEDGE_DEVICE_AGENT_SESSION_H_
