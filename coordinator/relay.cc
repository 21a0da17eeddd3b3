#include "coordinator/relay.h"

#include <sys/random.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/codec/update_codec.h"
#include "common/io/log_text.h"
#include "common/status/reject_reason.h"
#include "common/wire/wire_codec.h"
#include "coordinator/agent_desk.h"

namespace fedge {
namespace {

uint64_t RandomTaskBase() {
  uint64_t base = 0;
  if (getrandom(&base, sizeof(base), 0) != sizeof(base)) base = 0x9e3779b97f4a7c15ull;
  // Leave room to count up; never 0 (0 means "no task" in Register).
  return (base >> 8) | 1;
}

AggregationRule RuleOf(uint8_t rule) {
  return rule == kRuleMedian        ? AggregationRule::kMedian
         : rule == kRuleTrimmedMean ? AggregationRule::kTrimmedMean
                                    : AggregationRule::kFedAvg;
}

}  // namespace

RelayService::RelayService(RelayOptions options, Transport* upstream, Transport* downstream)
    : options_(std::move(options)),
      up_(upstream),
      down_(downstream),
      session_(options_.upstream),
      registry_(options_.liveness),
      refusals_(options_.refusals),
      next_task_id_(options_.first_task_id != 0 ? options_.first_task_id : RandomTaskBase()),
      rng_(next_task_id_) {
  session_.SetRelayLoad(load_);
}

void RelayService::Log(const std::string& line) const {
  if (options_.log) {
    std::fprintf(stderr, "[relay %s] %s\n", options_.upstream.device_id.c_str(), line.c_str());
  }
}

void RelayService::SendDown(const std::string& peer, uint64_t session, Body body) {
  Message m;
  m.device_id = DeviceOfRoute(peer);
  m.session_id = session;
  m.body = std::move(body);
  absl::StatusOr<EncodedMessage> frames = EncodeMessageShared(m);
  if (!frames.ok()) {
    Log(absl::StrCat("cannot encode ", BodyName(m.body), " for ", LogText(peer), ": ",
                     frames.status().ToString()));
    return;
  }
  Packet packet;
  packet.peer = peer;
  packet.frames = std::move(frames->frames);
  packet.shared_frames = std::move(frames->shared_frames);
  int64_t bytes = 0;
  for (const std::string& f : packet.frames) bytes += static_cast<int64_t>(f.size());
  for (const SharedFrame& f : packet.shared_frames) bytes += static_cast<int64_t>(f.size);
  if (down_->Send(std::move(packet)).ok()) {
    ++counters_.messages_out;
    counters_.bytes_out += bytes;
  }
}

void RelayService::SendUp(const Message& m) {
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
  if (!frames.ok()) {
    Log(absl::StrCat("cannot encode ", BodyName(m.body), " for the root: ",
                     frames.status().ToString()));
    return;
  }
  Packet p;
  p.frames = std::move(*frames);
  // Lost while disconnected: the session retries (the partial is kept until
  // acknowledged).
  if (up_->Send(std::move(p)).ok()) ++counters_.upstream_out;
}

void RelayService::Refuse(const std::string& peer, RejectReason reason,
                          const std::string& message, absl::Time now) {
  ++counters_.rejections[ReasonLabel(reason)];
  if (!refusals_.Allow(peer, now)) return;
  Log(absl::StrCat("refused a message from ", LogText(peer), " (", ReasonLabel(reason),
                   "): ", LogText(message, 300)));
  SendDown(peer, 0, Reject{message});
}

void RelayService::RefreshLoad(absl::Time now) {
  // Walks the agents: a few times a second, not on every packet (the root
  // hears of the load with the next heartbeat anyway).
  if (now - load_at_ < absl::Milliseconds(250)) return;
  load_at_ = now;
  RelayLoad load;
  for (const AgentRecord* agent : registry_.LiveAgents()) {
    ++load.agents;
    load.samples += agent->registration.samples;
    const uint64_t budget = agent->registration.memory_budget_bytes;
    load.min_memory_bytes = load.min_memory_bytes == 0 ? budget : std::min(load.min_memory_bytes, budget);
  }
  load_ = load;
  session_.SetRelayLoad(load_);
}

Task RelayService::LocalTask(uint64_t task_id) const {
  Task task = round_->spec;  // the shards' bytes shared, not copied
  task.relay.reset();
  task.task_id = task_id;
  task.deadline_ms = std::max<uint32_t>(
      1, static_cast<uint32_t>(round_->spec.deadline_ms * options_.deadline_fraction));
  return task;
}

void RelayService::GiveTask(const std::string& device) {
  const AgentRecord* agent = registry_.Find(device);
  if (agent == nullptr || !round_) return;
  Task task = LocalTask(next_task_id_++);
  round_->tasks[task.task_id] = Local{device, agent->registration.samples, false};
  round_->task_of[device] = task.task_id;
  ++round_->sampled;
  SendDown(agent->route, agent->session_id, std::move(task));
}

void RelayService::StartRound(Task task, absl::Time now) {
  if (!task.relay) {
    SendUp(session_.Wrap(TaskFailed{task.round_id, task.task_id,
                                    "a relay takes only tasks with a relay spec"}));
    return;
  }
  if (round_) {
    Log(absl::StrCat("the root moved on to round ", task.round_id, ": round ",
                     round_->spec.round_id, " dropped"));
    ++counters_.rounds_dropped;
    round_.reset();
  }
  Round round;
  round.started = now;
  round.deadline =
      now + absl::Milliseconds(static_cast<int64_t>(task.deadline_ms * options_.deadline_fraction));
  std::vector<ShardShape> shapes;
  for (WireTensor& shard : task.shards) {
    // The magnitude bound's scale: the shard's largest |value|, where it
    // decodes (frozen layers' codes are not trained and have none).
    float scale = 0;
    std::vector<float> values(static_cast<size_t>(std::max<int64_t>(0, shard.numel())));
    if (DecodeTensor(shard, absl::MakeSpan(values)).ok()) {
      for (float v : values) scale = std::max(scale, std::abs(v));
    }
    shapes.push_back({shard.name, shard.numel(), scale});
    // Every agent's task carries these bytes; none copies them.
    shard.shared_payload = std::make_shared<const std::string>(std::move(shard.payload));
    shard.payload.clear();
  }
  AggregatorOptions aggregation;
  aggregation.rule = RuleOf(task.relay->rule);
  aggregation.trim_fraction = task.relay->trim_fraction;
  aggregation.max_update_norm = task.relay->max_update_norm;
  aggregation.max_update_scale = task.relay->max_update_scale;
  round.aggregator = std::make_unique<Aggregator>(std::move(shapes), aggregation);
  round.spec = std::move(task);
  round_ = std::move(round);

  std::vector<const AgentRecord*> live = registry_.LiveAgents();
  std::shuffle(live.begin(), live.end(), rng_);
  live.resize(std::min<size_t>(live.size(), round_->spec.relay->agents));
  for (const AgentRecord* agent : live) GiveTask(agent->device_id);
  Log(absl::StrCat("round ", round_->spec.round_id, " (", PhaseName(round_->spec.phase),
                   "): task ", round_->spec.task_id, " to ", round_->sampled, " of ",
                   registry_.live(), " agents"));
}

void RelayService::OnAnswered(Local* local, bool failed) {
  local->answered = true;
  ++round_->answered;
  if (failed) ++round_->failed;
}

void RelayService::OnResult(const std::string& route, const Message& m,
                            const TaskResult& result) {
  absl::Status accepted;
  Local* local = nullptr;
  if (round_) {
    auto it = round_->tasks.find(result.task_id);
    if (it != round_->tasks.end()) local = &it->second;
  }
  if (local == nullptr || result.round_id != round_->spec.round_id) {
    accepted = WithReason(absl::FailedPreconditionError(absl::StrCat(
                              "result for task ", result.task_id, " of round ", result.round_id,
                              " arrived outside its round: dropped")),
                          RejectReason::kOutsideRound);
  } else if (local->device != m.device_id) {
    accepted = WithReason(absl::PermissionDeniedError(absl::StrCat(
                              "task ", result.task_id, " was given to '", local->device,
                              "', not '", m.device_id, "'")),
                          RejectReason::kWrongAgent);
  } else if (local->answered) {
    accepted = WithReason(
        absl::AlreadyExistsError(absl::StrCat("task ", result.task_id, " already answered")),
        RejectReason::kDuplicate);
  } else if (result.relay) {
    accepted = WithReason(absl::InvalidArgumentError("an agent's result with a relay's partial"),
                          RejectReason::kMalformedUpdate);
    OnAnswered(local, /*failed=*/true);
  } else {
    // Capped at the samples the agent registered with, as at the root.
    const uint64_t samples = local->max_samples > 0
                                 ? std::min(std::max<uint64_t>(1, result.samples), local->max_samples)
                                 : std::max<uint64_t>(1, result.samples);
    absl::StatusOr<int64_t> folded = round_->aggregator->AddResult(result.updates, samples, 0);
    accepted = folded.status();
    OnAnswered(local, !folded.ok());
    if (folded.ok()) {
      ++round_->reported;
      round_->loss += result.loss;
      round_->accuracy += result.accuracy;
      round_->peak_memory = std::max(round_->peak_memory, result.peak_memory_bytes);
      round_->process_rss = std::max(round_->process_rss, result.process_peak_rss_bytes);
    }
  }
  ResultAck ack{result.task_id, accepted.ok(), ""};
  if (!accepted.ok()) {
    const char* label = ReasonLabel(ReasonOf(accepted));
    ++counters_.rejections[label];
    if (round_ && local != nullptr && local->answered && result.round_id == round_->spec.round_id &&
        ReasonOf(accepted) != RejectReason::kDuplicate &&
        ReasonOf(accepted) != RejectReason::kWrongAgent) {
      ++round_->rejections[label];
    }
    ack.reason = label;
    Log(absl::StrCat("result of ", m.device_id, " for task ", result.task_id, " refused (", label,
                     "): ", LogText(accepted.ToString(), 300)));
  }
  SendDown(route, m.session_id, std::move(ack));
}

void RelayService::MaybeFinish(absl::Time now) {
  if (!round_) return;
  if (now < round_->deadline) {
    if (round_->answered < round_->sampled) return;
    // Fewer agents than the root asked for (this relay just restarted, or
    // agents are on their way from another relay): a few heartbeats for
    // them to register before the round is closed without them.
    const bool short_of_agents = round_->sampled < static_cast<int>(round_->spec.relay->agents);
    if (short_of_agents && now < round_->started + 3 * options_.liveness.heartbeat_interval) return;
  }
  Round& r = *round_;
  const int timed_out = r.sampled - r.answered;
  const int failed = r.failed + timed_out;
  counters_.agents_failed += failed;
  if (r.reported == 0) {
    ++counters_.rounds_failed;
    const std::string reason =
        r.sampled == 0 ? "no live agents"
                       : absl::StrCat("none of its ", r.sampled, " agents delivered (", timed_out,
                                      " timed out)");
    Log(absl::StrCat("round ", r.spec.round_id, ": ", reason));
    SendUp(session_.Wrap(TaskFailed{r.spec.round_id, r.spec.task_id, reason}));
    round_.reset();
    session_.SetBusy(0);
    return;
  }
  TaskResult partial;
  partial.round_id = r.spec.round_id;
  partial.task_id = r.spec.task_id;
  partial.model_version = r.spec.model_version;
  partial.loss = static_cast<float>(r.loss / r.reported);
  partial.accuracy = static_cast<float>(r.accuracy / r.reported);
  partial.peak_memory_bytes = r.peak_memory;
  partial.process_peak_rss_bytes = r.process_rss;
  partial.seconds = static_cast<float>(absl::ToDoubleSeconds(now - r.started));
  RelayPartial info;
  info.agents_sampled = static_cast<uint32_t>(r.sampled);
  info.agents_reported = static_cast<uint32_t>(r.reported);
  info.agents_failed = static_cast<uint32_t>(failed);
  for (const auto& [reason, count] : r.rejections) info.rejections.emplace_back(reason, count);
  const std::vector<ShardResult> shards = r.aggregator->Finish();
  double samples = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    if (!shards[s].updated) continue;
    const WireTensor& model = r.spec.shards[s];
    WireTensor t;
    t.layer = model.layer;
    t.name = model.name;
    t.shape = model.shape;
    if (absl::Status encoded = EncodeUpdate(shards[s].delta, {Codec::kFp32, 0, 1}, 0, nullptr, &t);
        !encoded.ok()) {
      Log(absl::StrCat("cannot encode the partial of ", model.name, ": ", encoded.ToString()));
      continue;
    }
    partial.updates.push_back(std::move(t));
    info.shard_weights.push_back(shards[s].total_weight);
    samples = std::max(samples, shards[s].total_weight);
  }
  partial.samples = static_cast<uint64_t>(std::llround(samples));
  partial.relay = std::move(info);
  ++counters_.rounds;
  counters_.agents_reported += r.reported;
  Log(absl::StrFormat("round %d: partial of %d agents (%d failed) sent up after %.1fs",
                      r.spec.round_id, r.reported, failed, partial.seconds));
  round_.reset();
  session_.SetBusy(0);
  for (const Message& m : session_.Deliver(std::move(partial), now)) SendUp(m);
}

void RelayService::Dispatch(const Packet& p, absl::Time now) {
  ++counters_.messages_in;
  for (const std::string& f : p.frames) counters_.bytes_in += static_cast<int64_t>(f.size());
  HandleAgentMessage(p, now, registry_, /*relay_ids=*/nullptr, &counters_.malformed);
}

void RelayService::SendToAgent(const std::string& peer, uint64_t session, Body body) {
  SendDown(peer, session, std::move(body));
}

void RelayService::OnFailed(const std::string& device, const TaskFailed& failed) {
  Log(absl::StrCat(device, " failed task ", failed.task_id, ": ", LogText(failed.reason, 300)));
  if (!round_) return;
  auto it = round_->tasks.find(failed.task_id);
  if (it != round_->tasks.end() && it->second.device == device && !it->second.answered) {
    OnAnswered(&it->second, /*failed=*/true);
  }
}

void RelayService::OnRegister(const Packet& p, const Message& m, const Register& reg,
                              absl::Time now) {
  const std::string& device = m.device_id;
  if (reg.relay) {
    Refuse(p.peer, RejectReason::kWrongRole,
           absl::StrCat("'", device, "' registered as a relay: relays connect to the root"), now);
    return;
  }
  absl::StatusOr<Welcome> w = registry_.OnRegister(device, p.authenticated_id, reg, now, p.peer);
  if (!w.ok()) {
    Refuse(p.peer, RejectReason::kRegistration, std::string(w.status().message()), now);
    return;
  }
  Log(absl::StrCat(device, " registered: ", reg.samples, " samples"));
  SendDown(p.peer, w->session_id, *w);
  if (!round_) return;
  // Its outstanding task again on a new connection; a task of the round
  // in flight for an agent that arrived since (failed over from another
  // relay, or new).
  auto given = round_->task_of.find(device);
  if (given == round_->task_of.end()) {
    GiveTask(device);
    return;
  }
  const Local& local = round_->tasks.at(given->second);
  if (!local.answered && reg.new_connection && reg.has_task != given->second) {
    const AgentRecord* agent = registry_.Find(device);
    SendDown(agent->route, agent->session_id, LocalTask(given->second));
  }
}

absl::Status RelayService::Step(absl::Time now, absl::Duration wait) {
  RefreshLoad(now);
  for (const Message& m : session_.OnTick(now)) SendUp(m);
  // Upstream: the root's welcome, tasks, acknowledgements.
  for (int i = 0; i < 16; ++i) {
    absl::StatusOr<std::optional<Packet>> packet = up_->Receive(absl::ZeroDuration());
    if (up_->connections() > up_connections_) {
      if (up_connections_ > 0) {
        Log("connection to the root re-established: registering again");
        session_.OnReconnected(now);
      }
      up_connections_ = up_->connections();
    }
    if (!packet.ok() || !packet->has_value()) break;
    ++counters_.upstream_in;
    absl::StatusOr<Message> m = DecodeMessage((**packet).frames);
    if (!m.ok()) {
      Log(absl::StrCat("dropped a bad message from the root: ",
                       LogText(m.status().ToString(), 300)));
      continue;
    }
    if (const auto* reject = std::get_if<Reject>(&m->body)) {
      Log(absl::StrCat("root: ", LogText(reject->reason, 300)));
    } else if (const auto* ack = std::get_if<ResultAck>(&m->body); ack && !ack->accepted) {
      Log(absl::StrCat("the root refused the partial of task ", ack->task_id, ": ",
                       LogText(ack->reason)));
    }
    for (const Message& out : session_.OnMessage(*m, now)) SendUp(out);
  }
  while (std::optional<Task> task = session_.TakeTask()) {
    session_.SetBusy(task->task_id);
    StartRound(std::move(*task), now);
  }
  // Downstream: the agents.
  for (int i = 0; i < 256; ++i) {
    absl::StatusOr<std::optional<Packet>> packet =
        down_->Receive(i == 0 ? wait : absl::ZeroDuration());
    if (!packet.ok()) {
      Log(absl::StrCat("receive: ", packet.status().ToString()));
      break;
    }
    if (!packet->has_value()) break;
    Dispatch(**packet, now);
  }
  for (const std::string& dead : registry_.Expire(now)) {
    Log(absl::StrCat(dead, " stopped heartbeating: counted as dead"));
    if (!round_) continue;
    if (auto given = round_->task_of.find(dead); given != round_->task_of.end()) {
      Local& local = round_->tasks.at(given->second);
      if (!local.answered) OnAnswered(&local, /*failed=*/true);
    }
  }
  MaybeFinish(now);
  return absl::OkStatus();
}

}  // namespace fedge
