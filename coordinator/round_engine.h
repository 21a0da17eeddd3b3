#ifndef FEDGE_COORDINATOR_ROUND_ENGINE_H_
#define FEDGE_COORDINATOR_ROUND_ENGINE_H_

// Decides what the coordinator does next (design 4.3): when to start a round,
// whom to sample (a fraction of the live agents, at least a minimum; a relay
// gets one task standing for that fraction of its agents), what
// each task carries (phase, penalty ramp, budgets, hyperparameters, the
// agent's trainable suffix), when to aggregate (a quorum of the sampled tasks
// reported, or the deadline passed with at least one result), and what to do
// with late results (dropped, or in the asynchronous mode folded into the
// next round with a staleness discount). Pure: takes `now` and decoded
// messages, returns tasks and aggregates; no I/O, no clock reads.
//
// Not thread-safe: owned by the coordinator's event loop.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/schedule/learning_rate.h"
#include "common/wire/messages.h"
#include "coordinator/aggregator.h"
#include "coordinator/model_state.h"
#include "coordinator/registry.h"

namespace fedge {

struct PhaseSpan {
  Phase phase = Phase::kPretrain;
  int rounds = 1;
};

struct RunConfig {
  std::vector<PhaseSpan> schedule = {{Phase::kPretrain, 2},
                                     {Phase::kLearnPrecision, 3},
                                     {Phase::kFinetune, 2}};
  double fraction = 1.0;
  int min_agents = 1;
  absl::Duration deadline = absl::Seconds(120);
  double quorum = 1.0;  // fraction of sampled tasks to wait for
  bool async = false;
  Hyper hyper;
  // Each round's task learning rate is hyper.learning_rate times the
  // schedule's factor at that round of the whole run.
  LrSchedule lr_schedule = LrSchedule::kConstant;
  Codec uplink = Codec::kSignEf;
  int uplink_bits = 0;
  AggregatorOptions aggregation;
  uint64_t seed = 1;
  // A round that ends with no accepted result is retried after a back-off
  // that doubles from `retry_backoff` up to `max_retry_backoff`.
  absl::Duration retry_backoff = absl::Seconds(1);
  absl::Duration max_retry_backoff = absl::Seconds(60);
};

struct OutgoingTask {
  std::string device_id;
  Task task;  // shards are the caller's to fill in
};

// Counted in agents throughout: a relay's task stands for the agents it
// samples, its partial for the agents it folded.
struct RoundSummary {
  uint64_t round = 0;
  Phase phase = Phase::kPretrain;
  int sampled = 0;
  int reported = 0;  // accepted results
  int failed = 0;    // failed, lost or rejected tasks
  int rejected = 0;  // of `failed`: results turned away (here or by a relay)
  int relays = 0;    // relay tasks among the round's tasks
  // Results the relays turned away, by reason label (reject_reason.h).
  std::map<std::string, int64_t> relay_rejections;
  int late_folded = 0;
  int64_t uplink_bytes = 0;
  uint64_t max_peak_memory = 0;    // training allocations, largest over the results
  uint64_t max_process_rss = 0;    // agent process peak RSS, largest over the results
  double mean_train_loss = 0;
  double mean_train_accuracy = 0;
  AggregatorStats aggregation;
};

// What one agent trains: layers [trainable_from, end), at `batch_size`
// (0: the run's).
struct ShardPlan {
  uint32_t trainable_from = 0;
  uint32_t batch_size = 0;
};

// Chooses each agent's plan from its registration (shard_planner.h);
// nullopt: the agent cannot train anything within its budget and is not
// sampled.
using ShardPlanner = std::function<std::optional<ShardPlan>(const AgentRecord& agent)>;

class RoundEngine {
 public:
  RoundEngine(const RunConfig& config, ShardPlanner planner);

  int total_rounds() const;
  bool done() const { return completed_ >= total_rounds(); }
  uint64_t completed_rounds() const { return completed_; }
  // The round in flight's summary so far.
  const RoundSummary& current() const { return summary_; }
  bool in_round() const { return in_round_; }
  // Phase and ramp of round r (0-based).
  Phase PhaseOf(uint64_t round) const;
  double RampOf(uint64_t round) const;

  // Resumes after `completed` rounds (from a checkpoint).
  void Resume(uint64_t completed) { completed_ = completed; }

  // Starts the next round if none is running and enough live agents can
  // train (have a plan).
  std::vector<OutgoingTask> MaybeStartRound(const std::vector<const AgentRecord*>& live,
                                            const ModelState& model, absl::Time now);

  // A result from `device`. Accepted into the aggregate, folded in late
  // (async), or rejected with a status saying why (tagged with a
  // RejectReason: unknown task, wrong round, malformed or non-finite
  // update...). A result is validated whole before any of it is folded: a
  // rejected one leaves the aggregate bit-identical, and its task counts as
  // failed, never toward the quorum. Its sample count is capped at the
  // samples the agent registered with.
  absl::Status OnResult(const std::string& device, const TaskResult& result,
                        const ModelState& model);
  void OnFailed(const std::string& device, const TaskFailed& failed);
  // Agents found dead no longer count towards the quorum.
  void OnAgentLost(const std::string& device);
  // The task `device` still owes in this round (shards not filled in), for
  // sending again after the agent registered anew: a task is never lost to
  // a re-registration.
  std::optional<Task> OutstandingTask(const std::string& device) const;

  // A round that ended with no accepted result is run again after a
  // back-off; this says so once per such round.
  struct Retry {
    uint64_t round = 0;
    int sampled = 0;
    int failed = 0;
    int rejected = 0;
    absl::Duration backoff;
  };
  std::optional<Retry> TakeRetry();
  // When the round is over: the deltas to apply and its summary.
  struct Finished {
    std::vector<ShardResult> deltas;
    RoundSummary summary;
  };
  std::optional<Finished> MaybeFinish(absl::Time now);

 private:
  struct Pending {
    Task task;  // without shards
    std::string device;
    uint64_t max_samples = 0;  // registered samples; 0: no cap
    bool reported = false;     // answered: accepted, failed or rejected
    int agents = 1;            // a relay's task: the agents it samples
  };
  // The task is answered: its agents count as answered, `failed` of them
  // as failed.
  void Answer(Pending* task, int failed);

  absl::Status Fold(const TaskResult& result, const ModelState& model, uint64_t samples,
                    int64_t staleness, Aggregator* aggregator, RoundSummary* summary);

  RunConfig config_;
  ShardPlanner planner_;
  std::mt19937_64 rng_;
  uint64_t completed_ = 0;
  bool in_round_ = false;
  uint64_t next_task_id_ = 1;
  absl::Time round_started_;
  absl::Time deadline_;
  std::map<uint64_t, Pending> pending_;  // task id -> task
  int answered_ = 0;       // agents of pending_'s tasks answered: reported, failed or lost
  int pending_agents_ = 0;  // agents pending_'s tasks stand for
  std::map<uint64_t, Pending> previous_round_tasks_;  // async: late results
  std::unique_ptr<Aggregator> aggregator_;
  std::unique_ptr<Aggregator> next_aggregator_;  // async: late results land here
  RoundSummary summary_;
  RoundSummary next_summary_;
  absl::Time retry_at_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::ZeroDuration();
  std::optional<Retry> retry_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_ROUND_ENGINE_H_
