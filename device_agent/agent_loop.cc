#include "device_agent/agent_loop.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/io/log_text.h"
#include "common/wire/wire_codec.h"

namespace fedge {

AgentLoop::AgentLoop(Transport* transport, TaskExecutor* executor, AgentLoopOptions options)
    : transport_(transport),
      executor_(executor),
      options_(std::move(options)),
      session_(options_.session) {}

void AgentLoop::Log(const std::string& line) const {
  if (options_.log) options_.log(absl::StrCat("[", options_.session.device_id, "] ", line));
}

void AgentLoop::Send(const Message& m) {
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
  if (!frames.ok()) {
    Log(absl::StrCat("cannot encode ", BodyName(m.body), ": ", frames.status().ToString()));
    return;
  }
  Packet p;
  p.frames = std::move(*frames);
  // Lost while disconnected: the protocol retries (results are kept until
  // acknowledged).
  (void)transport_->Send(std::move(p));
}

void AgentLoop::Handle(Message m, absl::Time now) {
  if (const auto* reject = std::get_if<Reject>(&m.body)) {
    Log(absl::StrCat("coordinator: ", LogText(reject->reason, 300)));
  } else if (const auto* ack = std::get_if<ResultAck>(&m.body); ack && !ack->accepted) {
    Log(absl::StrCat("coordinator refused the result of task ", ack->task_id, ": ",
                     LogText(ack->reason)));
  }
  for (const Message& out : session_.OnMessage(std::move(m), now)) Send(out);
}

void AgentLoop::Step(absl::Time now, absl::Duration wait) {
  if (last_received_ == absl::InfinitePast()) last_received_ = now;
  if (options_.fail_over && now - last_received_ > options_.failover_after) {
    last_received_ = now;  // the next endpoint gets as long
    if (absl::Status moved = options_.fail_over(); moved.ok()) {
      ++failovers_;
      Log(absl::StrCat("nothing from the coordinator for ",
                       absl::FormatDuration(options_.failover_after),
                       ": failed over to the next endpoint"));
    } else {
      Log(moved.ToString());
    }
  }
  for (const Message& m : session_.OnTick(now)) Send(m);
  for (int i = 0; i < options_.max_packets_per_step; ++i) {
    absl::StatusOr<std::optional<Packet>> packet =
        transport_->Receive(i == 0 ? wait : absl::ZeroDuration());
    if (transport_->connections() > connections_) {
      if (connections_ > 0) {
        Log("connection to the coordinator re-established: registering again");
        session_.OnReconnected(now);
      }
      connections_ = transport_->connections();
    }
    if (!packet.ok() || !packet->has_value()) break;
    last_received_ = now;
    absl::StatusOr<Message> m = DecodeMessage((**packet).frames);
    if (!m.ok()) {
      ++bad_messages_;
      Log(absl::StrCat("dropped a bad message: ", LogText(m.status().ToString(), 300)));
      continue;
    }
    Handle(*std::move(m), now);
  }
  if (!current_) {
    if (std::optional<Task> task = session_.TakeTask()) {
      current_ = std::move(task);
      session_.SetBusy(current_->task_id);
      executor_->Start(*current_, now);
    }
  }
  if (current_) {
    std::optional<absl::StatusOr<TaskResult>> outcome = executor_->Poll(now);
    if (!outcome) return;
    ++tasks_run_;
    session_.SetBusy(0);
    const Task task = std::move(*current_);
    current_.reset();
    if (outcome->ok()) {
      const TaskResult& r = **outcome;
      Log(absl::StrFormat("round %d %s: loss %.3f, acc %.1f%%, %.1fs, peak %.1f MB", task.round_id,
                          PhaseName(task.phase), r.loss, 100 * r.accuracy, r.seconds,
                          r.peak_memory_bytes / 1048576.0));
      for (const Message& out : session_.Deliver(std::move(**outcome), now)) Send(out);
    } else {
      Log(absl::StrCat("task ", task.task_id, " failed: ", outcome->status().ToString()));
      Send(session_.Wrap(
          TaskFailed{task.round_id, task.task_id, std::string(outcome->status().message())}));
    }
  }
}

void AgentLoop::Stop(absl::Time now, const std::string& reason) {
  if (!current_) return;
  executor_->CancelAndWait();
  (void)executor_->Poll(now);
  Send(session_.Wrap(TaskFailed{current_->round_id, current_->task_id, reason}));
  session_.SetBusy(0);
  current_.reset();
}

}  // namespace fedge
