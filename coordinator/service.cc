#include "coordinator/service.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/io/log_text.h"
#include "common/codec/update_codec.h"
#include "common/wire/wire_codec.h"
#include "coordinator/checkpoint.h"
#include "coordinator/agent_desk.h"

namespace fedge {
namespace {
// "INVALID_ARGUMENT: ..." without the status's payloads (the reason tag).
std::string Describe(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}
}  // namespace

CoordinatorService::CoordinatorService(ServiceOptions options, ModelState initial,
                                       uint64_t completed_rounds, Transport* transport,
                                       RoundCallback on_round)
    : options_(std::move(options)),
      model_(std::move(initial)),
      transport_(transport),
      on_round_(std::move(on_round)),
      registry_(options_.liveness),
      engine_(options_.run, options_.planner),
      server_optimizer_(options_.server_optimizer),
      refusals_(options_.refusals) {
  engine_.Resume(completed_rounds);
  counters_.checkpointed_round = completed_rounds;
}

void CoordinatorService::Refuse(const std::string& peer, RejectReason reason,
                                const std::string& message, absl::Time now) {
  ++counters_.rejections[ReasonLabel(reason)];
  if (!refusals_.Allow(peer, now)) {
    ++counters_.dropped_replies["rate_limited"];
    if (options_.log && refusals_.FirstDenial(peer)) {
      std::fprintf(stderr,
                   "[coordinator] %s is past its allowance of refused messages: further "
                   "refusals are counted but not answered or logged\n",
                   LogText(peer).c_str());
    }
    return;
  }
  if (options_.log) {
    std::fprintf(stderr, "[coordinator] refused a message from %s (%s): %s\n",
                 LogText(peer).c_str(), ReasonLabel(reason), LogText(message, 300).c_str());
  }
  Send(peer, 0, Reject{message});
}

void CoordinatorService::Send(const std::string& peer, uint64_t session, Body body) {
  Message m;
  m.device_id = DeviceOfRoute(peer);
  m.session_id = session;
  m.body = std::move(body);
  absl::StatusOr<EncodedMessage> frames = EncodeMessageShared(m);
  if (!frames.ok()) {
    ++counters_.dropped_replies["encode_failed"];
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] cannot encode %s for %s: %s\n", BodyName(m.body),
                   LogText(peer).c_str(), LogText(frames.status().ToString(), 300).c_str());
    }
    return;
  }
  Packet packet;
  packet.peer = peer;
  packet.frames = std::move(frames->frames);
  packet.shared_frames = std::move(frames->shared_frames);
  int64_t bytes = 0;
  for (const std::string& f : packet.frames) bytes += static_cast<int64_t>(f.size());
  for (const SharedFrame& f : packet.shared_frames) bytes += static_cast<int64_t>(f.size);
  const bool is_task = std::holds_alternative<Task>(m.body);
  absl::Status sent = transport_->Send(std::move(packet));
  if (sent.ok()) {
    ++counters_.messages_out;
    counters_.bytes_out += bytes;
    return;
  }
  ++counters_.dropped_replies[absl::IsResourceExhausted(sent) ? "peer_queue_full"
                                                               : "peer_unreachable"];
  // Replies are many and the protocol retries them; a lost task is worth a line.
  if (options_.log && is_task) {
    std::fprintf(stderr, "[coordinator] task for %s not sent: %s\n", LogText(peer).c_str(),
                 sent.ToString().c_str());
  }
}

void CoordinatorService::SendTask(const std::string& device, Task task) {
  const AgentRecord* agent = registry_.Find(device);
  if (agent == nullptr) return;
  task.shards.clear();
  for (size_t i = 0; i < round_shards_.size(); ++i) {
    const bool frozen = round_shards_[i].layer < task.trainable_from && round_frozen_[i];
    task.shards.push_back(frozen ? *round_frozen_[i] : round_shards_[i]);
    downlink_bytes_ += static_cast<int64_t>(task.shards.back().bytes().size());
    fp32_downlink_bytes_ += 4 * task.shards.back().numel();
  }
  Send(agent->route, agent->session_id, std::move(task));
}

void CoordinatorService::OnResult(const std::string& route, const Message& m,
                                  const TaskResult& result) {
  absl::Status accepted = engine_.OnResult(m.device_id, result, model_);
  ResultAck ack{result.task_id, accepted.ok(), ""};
  if (accepted.ok()) {
    ++counters_.accepted_results;
    for (const WireTensor& u : result.updates) fp32_bytes_[result.round_id] += 4 * u.numel();
  } else {
    const char* label = ReasonLabel(ReasonOf(accepted));
    ++counters_.rejected_results;
    ++counters_.rejections[label];
    ack.reason = label;
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] result of %s for task %llu refused (%s): %s\n",
                   m.device_id.c_str(), static_cast<unsigned long long>(result.task_id), label,
                   LogText(Describe(accepted), 300).c_str());
    }
  }
  // Every result is answered, accepted or not: the agent keeps it until then.
  Send(route, m.session_id, std::move(ack));
}

void CoordinatorService::Dispatch(const Packet& p, absl::Time now) {
  ++counters_.messages;
  for (const std::string& f : p.frames) counters_.bytes_in += static_cast<int64_t>(f.size());
  HandleAgentMessage(p, now, registry_, options_.relay_ids ? &*options_.relay_ids : nullptr,
                     &counters_.malformed);
}

void CoordinatorService::SendToAgent(const std::string& peer, uint64_t session, Body body) {
  Send(peer, session, std::move(body));
}

void CoordinatorService::OnFailed(const std::string& device, const TaskFailed& failed) {
  if (options_.log) {
    std::fprintf(stderr, "[coordinator] %s failed task %llu: %s\n", device.c_str(),
                 static_cast<unsigned long long>(failed.task_id),
                 LogText(failed.reason, 300).c_str());
  }
  engine_.OnFailed(device, failed);
}

void CoordinatorService::OnRegister(const Packet& p, const Message& m, const Register& reg,
                                    absl::Time now) {
  const std::string& device = m.device_id;
  if (options_.relay_ids) {
    // Under the key's id (a pool's relays register as "<pool>.<name>").
    const std::string& enrolled = p.authenticated_id.empty() ? device : p.authenticated_id;
    const bool enrolled_relay = options_.relay_ids->count(enrolled) != 0;
    if (enrolled_relay != reg.relay.has_value()) {
      Refuse(p.peer, RejectReason::kWrongRole,
             enrolled_relay ? absl::StrCat("'", device, "' is enrolled as a relay: it cannot "
                                           "register as an agent")
                            : absl::StrCat("'", device, "' is not enrolled as a relay: it "
                                           "cannot register as one"),
             now);
      return;
    }
  }
  // CheckSender vouched for the id (a pool relay's name included).
  absl::StatusOr<Welcome> w = registry_.OnRegister(
      device, p.authenticated_id.empty() ? "" : device, reg, now, p.peer);
  if (!w.ok()) {
    Refuse(p.peer, RejectReason::kRegistration, std::string(w.status().message()), now);
    return;
  }
  if (options_.log) {
    std::string plan = "trains every layer";
    if (options_.planner) {
      const AgentRecord* agent = registry_.Find(device);
      std::optional<ShardPlan> p = agent != nullptr ? options_.planner(*agent) : std::nullopt;
      plan = !p ? "cannot train within its budget: it will not be given tasks"
                : absl::StrCat("trains layers ", p->trainable_from, "+",
                               p->batch_size > 0 ? absl::StrCat(" at batch ", p->batch_size) : "");
    }
    std::fprintf(stderr, "[coordinator] %s registered%s: %.0f MB budget, %llu samples; %s\n",
                 device.c_str(),
                 reg.relay ? absl::StrCat(" as a relay of ", reg.relay->agents, " agents").c_str()
                            : "",
                 reg.memory_budget_bytes / 1048576.0,
                 static_cast<unsigned long long>(reg.samples), plan.c_str());
  }
  Send(p.peer, w->session_id, *w);
  // A task is never lost to a re-registration: an agent on a new
  // connection (it restarted, or its link was re-established, losing what
  // was queued) that does not hold its outstanding task gets it again. On
  // the same connection the task is still on its way (a slow link), and
  // sending it again would only queue a second copy behind the first.
  if (std::optional<Task> task = engine_.OutstandingTask(device);
      task && reg.new_connection && task->task_id != reg.has_task) {
    ++counters_.tasks_resent;
    if (options_.log) {
      std::fprintf(stderr, "[coordinator] %s registered again: sending task %llu again\n",
                   device.c_str(), static_cast<unsigned long long>(task->task_id));
    }
    SendTask(device, std::move(*task));
  }
}

void CoordinatorService::StartRound(absl::Time now) {
  // Cheap first: listing and planning every live agent on every packet
  // while a large fleet registers would cost more than the packets.
  if (engine_.done() ||
      registry_.live_agents() < static_cast<size_t>(std::max(1, options_.run.min_agents))) {
    return;
  }
  std::vector<OutgoingTask> tasks = engine_.MaybeStartRound(registry_.LiveAgents(), model_, now);
  if (tasks.empty()) return;
  if (options_.project_to_budget && tasks.front().task.phase == Phase::kFinetune) {
    absl::StatusOr<bool> moved = options_.project_to_budget(tasks.front().task.hyper, &model_);
    if (!moved.ok()) {
      if (options_.log) {
        std::fprintf(stderr, "[coordinator] cannot project the model onto its budget (%s): the "
                     "agents project it themselves\n", moved.status().ToString().c_str());
      }
    } else if (*moved) {
      ++counters_.projections;
      if (options_.log) std::fprintf(stderr, "[coordinator] model projected onto its budget\n");
    }
  }
  round_start_ = now;
  round_shards_.clear();
  round_frozen_.clear();
  downlink_bytes_ = fp32_downlink_bytes_ = 0;
  std::map<std::string, FrozenCoding> codings;
  if (options_.frozen_codings) codings = options_.frozen_codings(model_);
  for (const ModelShard& s : model_.shards) {
    WireTensor t;
    t.layer = static_cast<uint32_t>(s.layer);
    t.name = s.name;
    t.shape = s.shape;
    const Codec codec = static_cast<int64_t>(s.values.size()) >= kSmallTensorElements
                            ? options_.downlink
                            : Codec::kFp32;
    UpdateSpec spec{codec, 0, 1};
    if (codec == Codec::kQ) {
      spec.bits = options_.downlink_bits;
      spec.slices = s.shape.size() >= 2 ? s.shape[0] : 1;
    }
    if (absl::Status encoded = EncodeUpdate(s.values, spec, round_seed_++, nullptr, &t);
        !encoded.ok()) {
      if (options_.log) {
        std::fprintf(stderr, "[coordinator] cannot encode shard %s: %s\n", s.name.c_str(),
                     encoded.ToString().c_str());
      }
      return;
    }
    std::optional<WireTensor> frozen;
    if (auto it = codings.find(s.name); it != codings.end()) {
      frozen = t;
      if (absl::Status encoded = EncodeFrozen(s.values, it->second, &*frozen); !encoded.ok()) {
        // The shard still goes down whole: a coding that does not fit costs
        // bytes, not correctness.
        if (options_.log) {
          std::fprintf(stderr, "[coordinator] shard %s goes whole to frozen layers: %s\n",
                       s.name.c_str(), encoded.ToString().c_str());
        }
        frozen.reset();
      }
    }
    // Every task of the round sends these buffers, none copies them.
    auto share = [](WireTensor& w) {
      w.shared_payload = std::make_shared<const std::string>(std::move(w.payload));
      w.payload.clear();
    };
    share(t);
    if (frozen) share(*frozen);
    round_shards_.push_back(std::move(t));
    round_frozen_.push_back(std::move(frozen));
  }
  if (options_.log) {
    const RoundSummary& round = engine_.current();
    std::fprintf(stderr, "[coordinator] round %llu/%d (%s): %d agents%s\n",
                 static_cast<unsigned long long>(tasks[0].task.round_id), engine_.total_rounds(),
                 PhaseName(tasks[0].task.phase), round.sampled,
                 round.relays > 0 ? absl::StrCat(" (", round.relays, " relays)").c_str() : "");
  }
  for (OutgoingTask& t : tasks) SendTask(t.device_id, std::move(t.task));
}

absl::Status CoordinatorService::FinishRound(absl::Time now) {
  std::optional<RoundEngine::Finished> finished = engine_.MaybeFinish(now);
  if (std::optional<RoundEngine::Retry> retry = engine_.TakeRetry()) {
    ++counters_.round_retries;
    if (options_.log) {
      std::fprintf(stderr,
                   "[coordinator] round %llu got no accepted result (%d of %d tasks failed, lost "
                   "or timed out; %d results refused): running it again in %s\n",
                   static_cast<unsigned long long>(retry->round), retry->failed, retry->sampled,
                   retry->rejected, absl::FormatDuration(retry->backoff).c_str());
    }
  }
  if (!finished) return absl::OkStatus();
  std::vector<std::string> names;
  names.reserve(model_.shards.size());
  for (const ModelShard& shard : model_.shards) names.push_back(shard.name);
  if (options_.pool_statistics) PoolStatistics(model_, &finished->deltas);
  server_optimizer_.Transform(names, &finished->deltas);
  if (absl::Status applied = model_.Apply(finished->deltas); !applied.ok() && options_.log) {
    std::fprintf(stderr, "[coordinator] aggregate not applied: %s\n", applied.ToString().c_str());
  }
  if (!options_.checkpoint_path.empty()) {
    Checkpoint c;
    c.model = model_;
    c.completed_rounds = engine_.completed_rounds();
    for (const auto& [id, record] : registry_.agents()) c.known_agents.push_back(id);
    // A failed write (full disk, I/O error) leaves the last good checkpoint
    // in place; the run goes on with the model in memory and tries again
    // after the next round. A restart now would redo the rounds since.
    if (absl::Status s = WriteCheckpoint(options_.checkpoint_path, c, options_.env); s.ok()) {
      counters_.checkpointed_round = c.completed_rounds;
    } else {
      ++counters_.checkpoint_failures;
      if (options_.log) {
        std::fprintf(stderr,
                     "[coordinator] checkpoint after round %llu not written: %s; the last good "
                     "checkpoint (%s) stays in place\n",
                     static_cast<unsigned long long>(c.completed_rounds), s.ToString().c_str(),
                     counters_.checkpointed_round > 0
                         ? absl::StrCat("after round ", counters_.checkpointed_round).c_str()
                         : "none: a restart starts over");
      }
    }
  }
  RoundReport report;
  report.summary = finished->summary;
  report.fp32_uplink_bytes = fp32_bytes_[report.summary.round];
  fp32_bytes_.erase(report.summary.round);
  report.seconds = absl::ToDoubleSeconds(now - round_start_);
  report.downlink_bytes = downlink_bytes_;
  report.fp32_downlink_bytes = fp32_downlink_bytes_;
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
