#include "coordinator/round_engine.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status/reject_reason.h"
#include "common/status/status_macros.h"

namespace fedge {

RoundEngine::RoundEngine(const RunConfig& config, ShardPlanner planner)
    : config_(config), planner_(std::move(planner)), rng_(config.seed) {}

int RoundEngine::total_rounds() const {
  int total = 0;
  for (const PhaseSpan& span : config_.schedule) total += span.rounds;
  return total;
}

Phase RoundEngine::PhaseOf(uint64_t round) const {
  uint64_t at = 0;
  for (const PhaseSpan& span : config_.schedule) {
    if (round < at + span.rounds) return span.phase;
    at += span.rounds;
  }
  return config_.schedule.empty() ? Phase::kFinetune : config_.schedule.back().phase;
}

double RoundEngine::RampOf(uint64_t round) const {
  uint64_t at = 0;
  for (const PhaseSpan& span : config_.schedule) {
    if (round < at + span.rounds) {
      // s(t) ramps 0.01 -> 1 over the first half of the phase's rounds.
      const double half = std::max(1.0, span.rounds / 2.0);
      return 0.01 + 0.99 * std::min(1.0, static_cast<double>(round - at) / half);
    }
    at += span.rounds;
  }
  return 1.0;
}

std::vector<OutgoingTask> RoundEngine::MaybeStartRound(
    const std::vector<const AgentRecord*>& live, const ModelState& model, absl::Time now) {
  std::vector<OutgoingTask> out;
  if (in_round_ || done() || now < retry_at_) return out;
  // The agents that can train something, with what; relays (each with the
  // smallest budget among its agents) apart.
  std::vector<std::pair<const AgentRecord*, ShardPlan>> pool, relays;
  int relay_agents = 0;
  for (const AgentRecord* agent : live) {
    if (agent->relay && agent->relay_load.agents == 0) continue;
    if (std::optional<ShardPlan> plan = planner_ ? planner_(*agent) : ShardPlan{}) {
      if (agent->relay) {
        relays.emplace_back(agent, *plan);
        relay_agents += static_cast<int>(agent->relay_load.agents);
      } else {
        pool.emplace_back(agent, *plan);
      }
    }
  }
  if (static_cast<int>(pool.size()) + relay_agents < std::max(1, config_.min_agents)) return out;
  // Direct agents: the fraction, and enough to make up the minimum with the
  // relays' share.
  std::vector<int> relay_share;
  int from_relays = 0;
  for (const auto& [relay, plan] : relays) {
    relay_share.push_back(std::max(
        1, static_cast<int>(std::ceil(config_.fraction * relay->relay_load.agents))));
    from_relays += relay_share.back();
  }
  const int wanted = std::max<int>(
      config_.min_agents - from_relays, static_cast<int>(std::ceil(config_.fraction * pool.size())));
  std::shuffle(pool.begin(), pool.end(), rng_);
  pool.resize(std::min<size_t>(pool.size(), std::max(0, wanted)));

  in_round_ = true;
  round_started_ = now;
  deadline_ = now + config_.deadline;
  pending_.clear();
  answered_ = 0;
  pending_agents_ = 0;
  if (next_aggregator_) {
    aggregator_ = std::move(next_aggregator_);
    summary_ = next_summary_;
  } else {
    aggregator_ = std::make_unique<Aggregator>(model.Shapes(), config_.aggregation);
    summary_ = RoundSummary();
  }
  summary_.round = completed_ + 1;
  summary_.phase = PhaseOf(completed_);
  summary_.sampled = static_cast<int>(pool.size()) + from_relays;
  summary_.relays = static_cast<int>(relays.size());
  auto add = [&](const AgentRecord* agent, const ShardPlan& plan, int relay_agents_wanted) {
    OutgoingTask t;
    t.device_id = agent->device_id;
    t.task.round_id = completed_ + 1;
    t.task.task_id = next_task_id_++;
    t.task.model_version = model.version;
    t.task.phase = summary_.phase;
    t.task.deadline_ms = static_cast<uint32_t>(absl::ToInt64Milliseconds(config_.deadline));
    t.task.hyper = config_.hyper;
    t.task.hyper.learning_rate = static_cast<float>(
        config_.hyper.learning_rate *
        LrFactor(config_.lr_schedule, static_cast<int64_t>(completed_), total_rounds()));
    t.task.hyper.penalty_scale = t.task.phase == Phase::kLearnPrecision
                                     ? static_cast<float>(RampOf(completed_))
                                     : 0.0f;
    t.task.uplink_codec = config_.uplink;
    t.task.uplink_bits = static_cast<uint8_t>(config_.uplink_bits);
    t.task.trainable_from = plan.trainable_from;
    if (plan.batch_size > 0) t.task.hyper.batch_size = plan.batch_size;
    t.task.seed = rng_();
    if (relay_agents_wanted > 0) {
      const AggregatorOptions& a = config_.aggregation;
      t.task.relay = RelaySpec{static_cast<uint32_t>(relay_agents_wanted),
                               static_cast<uint8_t>(a.rule), static_cast<float>(a.trim_fraction),
                               a.max_update_norm, a.max_update_scale};
    }
    Pending pending{t.task, t.device_id, agent->registration.samples, false,
                    std::max(1, relay_agents_wanted)};
    if (relay_agents_wanted > 0) pending.max_samples = 0;  // a relay counts its agents' samples
    pending_agents_ += pending.agents;
    pending_[t.task.task_id] = std::move(pending);
    out.push_back(std::move(t));
  };
  for (size_t i = 0; i < relays.size(); ++i) add(relays[i].first, relays[i].second, relay_share[i]);
  for (const auto& [agent, plan] : pool) add(agent, plan, 0);
  return out;
}

absl::Status RoundEngine::Fold(const TaskResult& result, const ModelState& model,
                               uint64_t samples, int64_t staleness, Aggregator* aggregator,
                               RoundSummary* summary) {
  (void)model;
  // Validated whole first (every shard known and named once, every value
  // finite and within the bounds); only then is any of it folded.
  ASSIGN_OR_RETURN(const int64_t bytes,
                   aggregator->AddResult(result.updates, samples, staleness,
                                         result.relay ? &result.relay->shard_weights : nullptr));
  // A partial's loss and accuracy are its agents' means.
  const int agents = result.relay ? static_cast<int>(result.relay->agents_reported) : 1;
  summary->uplink_bytes += bytes;
  summary->max_peak_memory = std::max(summary->max_peak_memory, result.peak_memory_bytes);
  summary->max_process_rss = std::max(summary->max_process_rss, result.process_peak_rss_bytes);
  summary->mean_train_loss += result.loss * agents;
  summary->mean_train_accuracy += result.accuracy * agents;
  return absl::OkStatus();
}

void RoundEngine::Answer(Pending* task, int failed) {
  task->reported = true;
  answered_ += task->agents;
  summary_.failed += failed;
}

namespace {
uint64_t CappedSamples(uint64_t reported, uint64_t registered) {
  const uint64_t samples = std::max<uint64_t>(1, reported);
  return registered > 0 ? std::min(samples, registered) : samples;
}
}  // namespace

absl::Status RoundEngine::OnResult(const std::string& device, const TaskResult& result,
                                   const ModelState& model) {
  auto it = pending_.find(result.task_id);
  if (in_round_ && it != pending_.end() && result.round_id == completed_ + 1) {
    Pending& task = it->second;
    if (task.device != device) {
      return WithReason(absl::PermissionDeniedError(absl::StrCat(
                            "task ", result.task_id, " was given to '", task.device, "', not '",
                            device, "'")),
                        RejectReason::kWrongAgent);
    }
    if (task.reported) {
      return WithReason(
          absl::AlreadyExistsError(absl::StrCat("task ", result.task_id, " already answered")),
          RejectReason::kDuplicate);
    }
    const bool relay_task = task.task.relay.has_value();
    absl::Status folded;
    if (relay_task != result.relay.has_value()) {
      folded = WithReason(absl::InvalidArgumentError(
                              relay_task ? "a relay's task answered without a partial"
                                         : "an agent's task answered with a relay's partial"),
                          RejectReason::kMalformedUpdate);
    } else if (relay_task && result.relay->agents_reported == 0) {
      folded = WithReason(absl::InvalidArgumentError("a relay's partial of no agents"),
                          RejectReason::kMalformedUpdate);
    } else {
      folded = Fold(result, model, CappedSamples(result.samples, task.max_samples), 0,
                    aggregator_.get(), &summary_);
    }
    if (folded.ok() && relay_task) {
      const RelayPartial& p = *result.relay;
      // The relay may have taken in agents that moved to it mid-round.
      const int reported = static_cast<int>(p.agents_reported);
      summary_.reported += reported;
      summary_.sampled += std::max(0, reported - task.agents);
      for (const auto& [reason, count] : p.rejections) {
        summary_.relay_rejections[reason] += count;
        summary_.rejected += static_cast<int>(count);
      }
      Answer(&task, std::max(0, task.agents - reported));
    } else if (folded.ok()) {
      ++summary_.reported;
      Answer(&task, 0);
    } else {
      // A rejected result is a failed task: it never counts toward the quorum.
      summary_.rejected += task.agents;
      Answer(&task, task.agents);
    }
    return folded;
  }
  auto late = previous_round_tasks_.find(result.task_id);
  if (late != previous_round_tasks_.end() && late->second.device == device && config_.async &&
      late->second.task.relay.has_value() == result.relay.has_value()) {
    const uint64_t max_samples = late->second.max_samples;
    previous_round_tasks_.erase(late);
    if (!next_aggregator_ && !in_round_) {
      next_aggregator_ = std::make_unique<Aggregator>(model.Shapes(), config_.aggregation);
      next_summary_ = RoundSummary();
    }
    Aggregator& target = next_aggregator_ ? *next_aggregator_ : *aggregator_;
    RoundSummary& summary = next_aggregator_ ? next_summary_ : summary_;
    RETURN_IF_ERROR(Fold(result, model, CappedSamples(result.samples, max_samples),
                         /*staleness=*/1, &target, &summary));
    summary.late_folded += result.relay ? static_cast<int>(result.relay->agents_reported) : 1;
    return absl::OkStatus();
  }
  return WithReason(absl::FailedPreconditionError(absl::StrCat(
                        "result for task ", result.task_id, " of round ", result.round_id,
                        " arrived outside its round: dropped")),
                    RejectReason::kOutsideRound);
}

void RoundEngine::OnFailed(const std::string& device, const TaskFailed& failed) {
  auto it = pending_.find(failed.task_id);
  if (!in_round_ || it == pending_.end() || it->second.device != device || it->second.reported) {
    return;
  }
  Answer(&it->second, it->second.agents);
}

void RoundEngine::OnAgentLost(const std::string& device) {
  for (auto& [id, task] : pending_) {
    if (task.device == device && !task.reported) Answer(&task, task.agents);
  }
}

std::optional<Task> RoundEngine::OutstandingTask(const std::string& device) const {
  if (!in_round_) return std::nullopt;
  for (const auto& [id, task] : pending_) {
    if (task.device == device && !task.reported) return task.task;
  }
  return std::nullopt;
}

std::optional<RoundEngine::Retry> RoundEngine::TakeRetry() {
  std::optional<Retry> retry = std::move(retry_);
  retry_.reset();
  return retry;
}

std::optional<RoundEngine::Finished> RoundEngine::MaybeFinish(absl::Time now) {
  if (!in_round_) return std::nullopt;
  const int answered = answered_;  // kept as tasks answer: no walk over the round's tasks
  // Counted in agents, across relays.
  const int needed = std::max(1, static_cast<int>(std::ceil(config_.quorum * pending_agents_)));
  const bool quorum = summary_.reported >= needed || answered >= pending_agents_;
  const bool expired = now >= deadline_;
  if (!quorum && !expired) return std::nullopt;
  if (summary_.reported == 0 && summary_.late_folded == 0) {
    if (!expired && answered < pending_agents_) return std::nullopt;
    // Nobody delivered: run the round again with whoever is live, after a
    // back-off, so a fleet that keeps failing is not driven round after
    // round.
    backoff_ = backoff_ == absl::ZeroDuration()
                   ? config_.retry_backoff
                   : std::min(config_.max_retry_backoff, 2 * backoff_);
    retry_at_ = now + backoff_;
    retry_ = Retry{completed_ + 1, summary_.sampled, summary_.failed, summary_.rejected, backoff_};
    if (!expired) retry_->failed = answered;
    pending_.clear();
    answered_ = 0;
    pending_agents_ = 0;
    in_round_ = false;
    return std::nullopt;
  }
  backoff_ = absl::ZeroDuration();
  Finished finished;
  finished.deltas = aggregator_->Finish();
  const int contributions = summary_.reported + summary_.late_folded;
  summary_.mean_train_loss /= contributions;
  summary_.mean_train_accuracy /= contributions;
  summary_.aggregation = aggregator_->stats();
  finished.summary = summary_;
  previous_round_tasks_.clear();
  for (const auto& [id, task] : pending_) {
    if (!task.reported) previous_round_tasks_[id] = task;
  }
  pending_.clear();
  answered_ = 0;
  pending_agents_ = 0;
  aggregator_.reset();
  in_round_ = false;
  ++completed_;
  return finished;
}

}  // namespace fedge
