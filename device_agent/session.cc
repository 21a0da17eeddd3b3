#include "device_agent/session.h"

#include <utility>

namespace fedge {

AgentSession::AgentSession(SessionOptions options) : options_(std::move(options)) {}

Message AgentSession::Wrap(Body body) const {
  Message m;
  m.device_id = options_.device_id;
  m.session_id = session_id_;
  m.body = std::move(body);
  return m;
}

Message AgentSession::RegisterNow(absl::Time now) {
  state_ = State::kRegistering;
  session_id_ = 0;
  last_register_ = now;
  ++registrations_sent_;
  return Wrap(options_.registration);
}

std::vector<Message> AgentSession::OnTick(absl::Time now) {
  std::vector<Message> out;
  if (state_ == State::kRegistering) {
    if (now - last_register_ >= options_.register_retry) out.push_back(RegisterNow(now));
    return out;
  }
  if (now - last_heard_ > options_.coordinator_timeout) {
    out.push_back(RegisterNow(now));
    return out;
  }
  if (now - last_heartbeat_ >= heartbeat_interval_) {
    last_heartbeat_ = now;
    out.push_back(Wrap(Heartbeat{busy_task_}));
  }
  return out;
}

std::vector<Message> AgentSession::OnMessage(const Message& message, absl::Time now) {
  std::vector<Message> out;
  last_heard_ = now;
  if (const auto* welcome = std::get_if<Welcome>(&message.body)) {
    state_ = State::kReady;
    session_id_ = welcome->session_id;
    heartbeat_interval_ = absl::Milliseconds(welcome->heartbeat_interval_ms);
    last_heartbeat_ = now;
    last_reject_.clear();
  } else if (const auto* reject = std::get_if<Reject>(&message.body)) {
    last_reject_ = reject->reason;
    // The session is not (or no longer) known: register again, at the retry
    // pace so a coordinator that keeps refusing is not flooded.
    if (state_ == State::kReady) {
      out.push_back(RegisterNow(now));
    } else {
      state_ = State::kRegistering;
    }
  } else if (const auto* task = std::get_if<Task>(&message.body)) {
    if (state_ == State::kReady && message.session_id == session_id_) {
      tasks_.push_back(*task);
    }
  }
  return out;
}

std::optional<Task> AgentSession::TakeTask() {
  if (tasks_.empty()) return std::nullopt;
  Task task = std::move(tasks_.front());
  tasks_.pop_front();
  return task;
}

}  // namespace fedge
