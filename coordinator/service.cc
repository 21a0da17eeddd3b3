#include "coordinator/service.h"

#include <cstdio>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/update_codec.h"
#include "common/wire_codec.h"
#include "coordinator/checkpoint.h"

namespace fedge {

CoordinatorService::CoordinatorService(ServiceOptions options, ModelState initial,
                                       uint64_t completed_rounds, Transport* transport,
                                       RoundCallback on_round)
    : options_(std::move(options)),
      model_(std::move(initial)),
      transport_(transport),
      on_round_(std::move(on_round)),
      registry_(options_.liveness),
      engine_(options_.run, options_.planner),
      server_optimizer_(options_.server_optimizer) {
  engine_.Resume(completed_rounds);
}

std::string RejectionReason(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kPermissionDenied:
      return "wrong_agent";
    case absl::StatusCode::kAlreadyExists:
      return "duplicate";
    case absl::StatusCode::kFailedPrecondition:
      return "outside_round";
    default:
      break;
  }
  if (absl::StrContains(status.message(), "not finite")) return "non_finite";
  if (absl::StrContains(status.message(), "exceeds the bound")) return "norm_bound";
  return "malformed_update";
}

void CoordinatorService::Refuse(const std::string& peer, const std::string& reason,
                                std::string message) {
  ++counters_.rejections[reason];
  Send(peer, 0, Reject{std::move(message)});
}

void CoordinatorService::Send(const std::string& peer, uint64_t session, Body body) {
  Message m;
  m.device_id = peer;
  m.session_id = session;
  m.body = std::move(body);
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
  if (!frames.ok()) {
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] cannot encode %s for %s: %s\n", BodyName(m.body),
                   peer.c_str(), frames.status().ToString().c_str());
    }
    return;
  }
  Packet packet;
  packet.peer = peer;
  packet.frames = std::move(*frames);
  ++counters_.messages_out;
  for (const std::string& f : packet.frames) counters_.bytes_out += static_cast<int64_t>(f.size());
  absl::Status sent = transport_->Send(std::move(packet));
  if (!sent.ok() && options_.log) {
    std::fprintf(stderr, "[coordinator] send to %s failed: %s\n", peer.c_str(),
                 sent.ToString().c_str());
  }
}

void CoordinatorService::Dispatch(const Packet& p, absl::Time now) {
  ++counters_.messages;
  for (const std::string& f : p.frames) counters_.bytes_in += static_cast<int64_t>(f.size());
  absl::StatusOr<Message> m = DecodeMessage(p.frames);
  if (!m.ok()) {
    ++counters_.malformed;
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] rejected a message from %s: %s\n", p.peer.c_str(),
                   m.status().ToString().c_str());
    }
    Refuse(p.peer, "malformed_message", std::string(m.status().message()));
    return;
  }
  if (m->device_id != p.peer) {
    Refuse(p.peer, "identity_mismatch",
           absl::StrCat("device id '", m->device_id, "' does not match the connection's '",
                        p.peer, "'"));
    return;
  }
  if (const auto* reg = std::get_if<Register>(&m->body)) {
    absl::StatusOr<Welcome> w = registry_.OnRegister(m->device_id, p.authenticated_id, *reg, now);
    if (!w.ok()) {
      Refuse(p.peer, "registration", std::string(w.status().message()));
      return;
    }
    if (options_.log) {
      std::string plan = "trains every layer";
      if (options_.planner) {
        const AgentRecord* agent = registry_.Find(m->device_id);
        std::optional<ShardPlan> p = agent != nullptr ? options_.planner(*agent) : std::nullopt;
        plan = !p ? "cannot train within its budget: it will not be given tasks"
                  : absl::StrCat("trains layers ", p->trainable_from, "+",
                                 p->batch_size > 0 ? absl::StrCat(" at batch ", p->batch_size) : "");
      }
      std::fprintf(stderr, "[coordinator] %s registered: %.0f MB budget, %llu samples; %s\n",
                   m->device_id.c_str(), reg->memory_budget_bytes / 1048576.0,
                   static_cast<unsigned long long>(reg->samples), plan.c_str());
    }
    Send(p.peer, w->session_id, *w);
    return;
  }
  if (absl::Status known = registry_.OnHeard(m->device_id, m->session_id, now); !known.ok()) {
    Refuse(p.peer, "unknown_session", std::string(known.message()));
    return;
  }
  if (const auto* hb = std::get_if<Heartbeat>(&m->body)) {
    (void)registry_.OnHeartbeat(m->device_id, m->session_id, *hb, now);
    Send(p.peer, m->session_id, NoTask{1000});
  } else if (const auto* result = std::get_if<TaskResult>(&m->body)) {
    absl::Status accepted = engine_.OnResult(m->device_id, *result, model_);
    if (accepted.ok()) {
      ++counters_.accepted_results;
      for (const WireTensor& u : result->updates) fp32_bytes_[result->round_id] += 4 * u.numel();
    } else {
      ++counters_.rejected_results;
      ++counters_.rejections[RejectionReason(accepted)];
      if (options_.log) {
        std::fprintf(stderr, "[coordinator] result of %s: %s\n", m->device_id.c_str(),
                     accepted.ToString().c_str());
      }
    }
  } else if (const auto* failed = std::get_if<TaskFailed>(&m->body)) {
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] %s failed task %llu: %s\n", m->device_id.c_str(),
                   static_cast<unsigned long long>(failed->task_id), failed->reason.c_str());
    }
    engine_.OnFailed(m->device_id, *failed);
  } else {
    ++counters_.rejections["not_for_coordinator"];
    Send(p.peer, m->session_id,
         Reject{absl::StrCat(BodyName(m->body), " is not a message an agent sends")});
  }
}

void CoordinatorService::StartRound(absl::Time now) {
  std::vector<OutgoingTask> tasks = engine_.MaybeStartRound(registry_.LiveAgents(), model_, now);
  if (tasks.empty()) return;
  round_start_ = now;
  std::vector<WireTensor> shards;
  for (const ModelShard& s : model_.shards) {
    WireTensor t;
    t.layer = static_cast<uint32_t>(s.layer);
    t.name = s.name;
    t.shape = s.shape;
    const Codec codec = s.values.size() >= 1024 ? options_.downlink : Codec::kFp32;
    if (!EncodeUpdate(s.values, {codec, 0, 1}, 0, nullptr, &t).ok()) return;
    shards.push_back(std::move(t));
  }
  if (options_.log) {
    std::fprintf(stderr, "[coordinator] round %llu/%d (%s): %zu agents\n",
                 static_cast<unsigned long long>(tasks[0].task.round_id), engine_.total_rounds(),
                 PhaseName(tasks[0].task.phase), tasks.size());
  }
  for (OutgoingTask& t : tasks) {
    t.task.shards = shards;
    const AgentRecord* agent = registry_.Find(t.device_id);
    Send(t.device_id, agent != nullptr ? agent->session_id : 0, std::move(t.task));
  }
}

absl::Status CoordinatorService::FinishRound(absl::Time now) {
  std::optional<RoundEngine::Finished> finished = engine_.MaybeFinish(now);
  if (!finished) return absl::OkStatus();
  server_optimizer_.Transform(&finished->deltas);
  if (absl::Status applied = model_.Apply(finished->deltas); !applied.ok() && options_.log) {
    std::fprintf(stderr, "[coordinator] aggregate not applied: %s\n", applied.ToString().c_str());
  }
  if (!options_.checkpoint_path.empty()) {
    Checkpoint c;
    c.model = model_;
    c.completed_rounds = engine_.completed_rounds();
    for (const auto& [id, record] : registry_.agents()) c.known_agents.push_back(id);
    if (absl::Status s = WriteCheckpoint(options_.checkpoint_path, c); !s.ok()) return s;
  }
  RoundReport report;
  report.summary = finished->summary;
  report.fp32_uplink_bytes = fp32_bytes_[report.summary.round];
  fp32_bytes_.erase(report.summary.round);
  report.seconds = absl::ToDoubleSeconds(now - round_start_);
  if (on_round_) on_round_(report, model_);
  return absl::OkStatus();
}

absl::Status CoordinatorService::Step(absl::Time now, absl::Duration wait) {
  absl::StatusOr<std::optional<Packet>> packet = transport_->Receive(wait);
  if (!packet.ok()) {
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] receive: %s\n", packet.status().ToString().c_str());
    }
  } else if (packet->has_value()) {
    Dispatch(**packet, now);
  }
  for (const std::string& dead : registry_.Expire(now)) {
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] %s stopped heartbeating: counted as dead\n", dead.c_str());
    }
    engine_.OnAgentLost(dead);
  }
  if (!engine_.in_round()) StartRound(now);
  return FinishRound(now);
}

}  // namespace fedge
