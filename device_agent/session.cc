#include "device_agent/session.h"

#include <utility>

namespace fedge {

AgentSession::AgentSession(SessionOptions options)
    : options_(std::move(options)), register_wait_(options_.register_retry) {}

Message AgentSession::Wrap(Body body) const {
  Message m;
  m.device_id = options_.device_id;
  m.session_id = session_id_;
  m.body = std::move(body);
  return m;
}

Message AgentSession::RegisterNow(absl::Time now) {
  if (state_ == State::kRegistering && registrations_sent_ > 0) {
    register_wait_ = std::min(options_.max_register_retry, 2 * register_wait_);
  } else {
    register_wait_ = options_.register_retry;
  }
  state_ = State::kRegistering;
  session_id_ = 0;
  last_register_ = now;
  ++registrations_sent_;
  Register registration = options_.registration;
  registration.has_task = result_           ? result_->task_id
                          : busy_task_ != 0 ? busy_task_
                          : !tasks_.empty() ? tasks_.back().task_id
                                            : 0;
  registration.new_connection = new_connection_;
  if (relay_load_) {
    registration.relay = relay_load_;
    registration.samples = relay_load_->samples;
    if (relay_load_->min_memory_bytes > 0) {
      registration.memory_budget_bytes = relay_load_->min_memory_bytes;
    }
  }
  new_connection_ = false;
  return Wrap(registration);
}

std::vector<Message> AgentSession::OnTick(absl::Time now) {
  std::vector<Message> out;
  if (state_ == State::kRegistering) {
    if (now - last_register_ >= register_wait_) out.push_back(RegisterNow(now));
    return out;
  }
  if (now - last_heard_ > options_.coordinator_timeout) {
    out.push_back(RegisterNow(now));
    return out;
  }
  if (result_ && (result_session_ != session_id_ || now - result_sent_ >= options_.result_retry)) {
    result_sent_ = now;
    result_session_ = session_id_;
    ++results_sent_;
    out.push_back(Wrap(*result_));
  }
  if (now - last_heartbeat_ >= heartbeat_interval_) {
    last_heartbeat_ = now;
    out.push_back(Wrap(Heartbeat{busy_task_, relay_load_}));
  }
  return out;
}

std::vector<Message> AgentSession::OnMessage(Message message, absl::Time now) {
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
  } else if (auto* task = std::get_if<Task>(&message.body)) {
    // Whatever session it was sent under: a task sent before a
    // re-registration is still ours (the coordinator sends it again after
    // one, so ids tell the copies apart).
    if (!Seen(task->task_id)) tasks_.push_back(std::move(*task));
  } else if (const auto* ack = std::get_if<ResultAck>(&message.body)) {
    if (result_ && result_->task_id == ack->task_id) result_.reset();
  }
  return out;
}

void AgentSession::OnReconnected(absl::Time now) {
  new_connection_ = true;
  state_ = State::kRegistering;
  register_wait_ = options_.register_retry;
  last_register_ = absl::InfinitePast();
  (void)now;
}

bool AgentSession::Seen(uint64_t task_id) {
  if (std::find(seen_tasks_.begin(), seen_tasks_.end(), task_id) != seen_tasks_.end()) {
    return true;
  }
  seen_tasks_.push_back(task_id);
  if (seen_tasks_.size() > 64) seen_tasks_.pop_front();
  return false;
}

std::vector<Message> AgentSession::Deliver(TaskResult result, absl::Time now) {
  std::vector<Message> out;
  result_ = std::move(result);
  result_session_ = session_id_;
  result_sent_ = now;
  if (state_ == State::kReady) {
    ++results_sent_;
    out.push_back(Wrap(*result_));
  } else {
    result_session_ = 0;  // sent once welcomed
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
