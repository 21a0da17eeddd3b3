#ifndef FEDGE_COORDINATOR_SERVICE_H_
#define FEDGE_COORDINATOR_SERVICE_H_

// The coordinator's event loop, one step at a time: takes at most one packet
// from the transport, validates and dispatches it (registration, heartbeats,
// results, failures), expires silent agents, starts rounds and sends their
// tasks, and when a round is over applies the aggregate to the model, writes
// the checkpoint and reports the round. Every bad message is answered with a
// Reject or logged; nothing a peer sends stops the service.
//
// The same service runs in the coordinator binary (over ZeroMQ) and in fleet
// simulations (over the in-memory transport). Not thread-safe: the thread
// that owns the transport calls Step.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/transport/transport.h"
#include "common/env/env.h"
#include "common/codec/update_codec.h"
#include "common/status/reject_reason.h"
#include "coordinator/model_state.h"
#include "coordinator/peer_limiter.h"
#include "coordinator/agent_desk.h"
#include "coordinator/registry.h"
#include "coordinator/round_engine.h"
#include "coordinator/server_optimizer.h"

namespace fedge {

struct ServiceOptions {
  RunConfig run;
  // Refused messages answered (and logged) per peer: a flooding peer gets
  // no more than this, the rest is dropped and counted.
  PeerLimiterOptions refusals;
  RegistryOptions liveness;
  Codec downlink = Codec::kFp16;  // weight shards; small tensors go as fp32
  int downlink_bits = 0;          // kQ: 8 (one scale per output channel)
  // Mixed-precision downlink: the weight shards of the layers an agent runs
  // frozen (before its task's trainable_from) go as the codes its forward
  // pass uses, at their learned bit-widths (or signs, for a binary
  // network), by shard name; the trainable ones as `downlink`. Called once
  // per round on the model; null: every shard goes as `downlink`.
  std::function<std::map<std::string, FrozenCoding>(const ModelState&)> frozen_codings;
  // Before a finetune round's shards go out: brings the global model onto
  // the round's size budgets (`hyper`), in place, returning whether it
  // moved, so every agent receives a model within budget and none has to
  // project it (agents that did would have to agree bit for bit). Unset or
  // failing: the agents project the model themselves.
  std::function<absl::StatusOr<bool>(const Hyper& hyper, ModelState* model)> project_to_budget;
  std::string checkpoint_path;    // empty: no checkpoints
  Env* env = Env::Default();      // where checkpoints are written
  ShardPlanner planner;           // null: everyone trains everything
  ServerOptimizerOptions server_optimizer;
  // Under FedAvg: a round's batch-norm statistics become those of the
  // agents' data pooled (PoolStatistics, model_state.h), not the mean of
  // each agent's; false: the mean.
  bool pool_statistics = true;
  // Ids enrolled as relay aggregators (the allowlist's "relay" lines): only
  // they may register as relays, and they only as relays. nullopt: links
  // without keys (plaintext), where any device may register as either.
  std::optional<std::set<std::string>> relay_ids;
  bool log = true;                // one line per notable event on stderr
};

struct RoundReport {
  RoundSummary summary;
  int64_t fp32_uplink_bytes = 0;  // what the same updates cost in fp32
  // Model shard payload bytes of the round's tasks (resends included), and
  // what they would have cost in fp32.
  int64_t downlink_bytes = 0;
  int64_t fp32_downlink_bytes = 0;
  double seconds = 0;
};

struct ServiceCounters {
  int64_t messages = 0;          // received
  int64_t messages_out = 0;
  int64_t bytes_in = 0;          // frame bytes, received
  int64_t bytes_out = 0;
  int64_t malformed = 0;
  int64_t accepted_results = 0;
  int64_t rejected_results = 0;
  // Every message or result turned away, by ReasonLabel (reject_reason.h).
  std::map<std::string, int64_t> rejections;
  // Replies not sent, by kDropReasons: the event loop never waits on a peer.
  std::map<std::string, int64_t> dropped_replies;
  int64_t tasks_resent = 0;   // after the agent registered again
  int64_t projections = 0;    // finetune rounds whose model was projected onto its budget
  int64_t round_retries = 0;  // rounds that ended with no accepted result
  int64_t checkpoint_failures = 0;  // the last good checkpoint stayed in place
  uint64_t checkpointed_round = 0;  // the round the checkpoint on disk holds
};

// Why a reply was dropped (the metrics' `reason`): the peer's queue was full
// (it does not read), the peer was gone, the peer was over its allowance of
// refusals, or the reply could not be encoded.
inline constexpr const char* kDropReasons[] = {"peer_queue_full", "peer_unreachable",
                                               "rate_limited", "encode_failed"};

class CoordinatorService : private AgentDesk {
 public:
  using RoundCallback = std::function<void(const RoundReport&, const ModelState&)>;

  CoordinatorService(ServiceOptions options, ModelState initial, uint64_t completed_rounds,
                     Transport* transport, RoundCallback on_round);

  absl::Status Step(absl::Time now, absl::Duration wait);

  bool done() const { return engine_.done(); }
  const ModelState& model() const { return model_; }
  const Registry& registry() const { return registry_; }
  const RoundEngine& engine() const { return engine_; }
  const ServiceCounters& counters() const { return counters_; }

 private:
  void Send(const std::string& peer, uint64_t session, Body body);
  // Counts the refusal under `reason`, then answers with a Reject and logs
  // it unless the peer is past its allowance.
  void Refuse(const std::string& peer, RejectReason reason, const std::string& message,
              absl::Time now) override;
  void Dispatch(const Packet& packet, absl::Time now);
  void OnRegister(const Packet& packet, const Message& m, const Register& reg,
                  absl::Time now) override;
  void SendToAgent(const std::string& peer, uint64_t session, Body body) override;
  void OnFailed(const std::string& device, const TaskFailed& failed) override;
  void OnResult(const std::string& route, const Message& m, const TaskResult& result) override;
  void SendTask(const std::string& device, Task task);
  void StartRound(absl::Time now);
  absl::Status FinishRound(absl::Time now);

  ServiceOptions options_;
  ModelState model_;
  Transport* transport_;
  RoundCallback on_round_;
  Registry registry_;
  RoundEngine engine_;
  ServerOptimizer server_optimizer_;
  std::map<uint64_t, int64_t> fp32_bytes_;
  std::vector<WireTensor> round_shards_;  // the model as this round's tasks carry it
  // Per shard, its frozen form when it has one (mixed-precision downlink).
  std::vector<std::optional<WireTensor>> round_frozen_;
  int64_t downlink_bytes_ = 0, fp32_downlink_bytes_ = 0;  // this round's tasks
  uint64_t round_seed_ = 1;  // q8 downlink's rounding noise
  PeerLimiter refusals_;
  absl::Time round_start_;
  ServiceCounters counters_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SERVICE_H_
