#ifndef FEDGE_COORDINATOR_RELAY_H_
#define FEDGE_COORDINATOR_RELAY_H_

// A relay aggregator (design 4.6): sits between agents and the root
// coordinator when one machine is not enough. Agents speak the unchanged
// agent protocol to it (register, heartbeat, task, result); upstream it is
// one session to the root under its own key, enrolled there as a relay,
// whose Register and heartbeats carry its load (live agents, their samples,
// their smallest memory budget).
//
// Per round it receives the root's task once, with the model shards and a
// relay spec (how many agents, the aggregation rule and bounds), samples
// that many of its live agents and fans the task out to them (the shards
// are shared, not copied, across their messages). Each agent's result is
// validated whole and folded into one aggregate (coordinator/aggregator.h)
// as it arrives, and acknowledged. When every sampled agent has answered
// (and it had as many as the root asked for, or three heartbeat intervals
// have passed for more to register), or its deadline (a fraction of the
// root's, so the partial arrives in time) has passed, it sends up one partial: per shard the sample-weighted
// mean of its agents' updates (or the rule's statistic over them) as fp32,
// the weight behind each shard, how many agents reported and failed, and
// its rejections by reason; none delivered: a TaskFailed. The partial is
// kept until the root acknowledges it, like an agent's result. An agent
// that registers while the round is in flight (one that failed over from
// another relay) gets the task too. The relay keeps no state but the
// round in flight: a restarted relay re-registers and starts with the next
// task.
//
//   RelayService relay(options, upstream.get(), downstream.get());
//   while (!stop) RETURN_IF_ERROR(relay.Step(absl::Now(), absl::Milliseconds(50)));
//
// Not thread-safe: one thread steps it (the transports').

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/status/reject_reason.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"
#include "coordinator/aggregator.h"
#include "coordinator/peer_limiter.h"
#include "coordinator/agent_desk.h"
#include "coordinator/registry.h"
#include "device_agent/session.h"

namespace fedge {

struct RelayOptions {
  // The upstream session: device_id is the relay's id (as enrolled on the
  // root); the registration's agent version and timeouts are the relay's.
  SessionOptions upstream;
  RegistryOptions liveness;      // of its agents
  PeerLimiterOptions refusals;   // refused messages answered per agent
  // The agents' deadline, as a fraction of the root's.
  double deadline_fraction = 0.8;
  // First local task id; 0: random (so ids never collide with another
  // relay's when an agent fails over between them).
  uint64_t first_task_id = 0;
  bool log = true;
};

struct RelayCounters {
  int64_t messages_in = 0, messages_out = 0;  // downstream
  int64_t bytes_in = 0, bytes_out = 0;        // downstream
  int64_t upstream_in = 0, upstream_out = 0;  // messages
  int64_t rounds = 0;          // partials sent up
  int64_t rounds_failed = 0;   // rounds none of its agents delivered
  int64_t rounds_dropped = 0;  // the root moved on before the partial was ready
  int64_t agents_reported = 0, agents_failed = 0;
  int64_t malformed = 0;
  std::map<std::string, int64_t> rejections;  // by ReasonLabel
};

class RelayService : private AgentDesk {
 public:
  // Both transports must outlive the service.
  RelayService(RelayOptions options, Transport* upstream, Transport* downstream);

  absl::Status Step(absl::Time now, absl::Duration wait);

  const Registry& registry() const { return registry_; }
  const AgentSession& upstream() const { return session_; }
  const RelayCounters& counters() const { return counters_; }
  bool in_round() const { return round_.has_value(); }
  RelayLoad load() const { return load_; }

 private:
  struct Local {
    std::string device;
    uint64_t max_samples = 0;
    bool answered = false;
  };
  struct Round {
    Task spec;  // the root's task, shards shared
    absl::Time started, deadline;
    std::unique_ptr<Aggregator> aggregator;
    std::map<uint64_t, Local> tasks;  // local task id -> agent
    std::map<std::string, uint64_t> task_of;  // agent -> its local task id
    int sampled = 0, reported = 0, failed = 0, answered = 0;
    std::map<std::string, uint32_t> rejections;
    double loss = 0, accuracy = 0;
    uint64_t peak_memory = 0, process_rss = 0;
  };

  void SendDown(const std::string& peer, uint64_t session, Body body);
  void SendUp(const Message& m);
  void Refuse(const std::string& peer, RejectReason reason, const std::string& message,
              absl::Time now) override;
  void Dispatch(const Packet& packet, absl::Time now);
  void OnRegister(const Packet& packet, const Message& m, const Register& reg,
                  absl::Time now) override;
  void SendToAgent(const std::string& peer, uint64_t session, Body body) override;
  void OnFailed(const std::string& device, const TaskFailed& failed) override;
  void OnResult(const std::string& route, const Message& m, const TaskResult& result) override;
  void OnAnswered(Local* local, bool failed);
  void StartRound(Task task, absl::Time now);
  // The round's task as agent task `task_id` gets it.
  Task LocalTask(uint64_t task_id) const;
  void GiveTask(const std::string& device);
  void MaybeFinish(absl::Time now);
  void RefreshLoad(absl::Time now);
  void Log(const std::string& line) const;

  RelayOptions options_;
  Transport* up_;
  Transport* down_;
  AgentSession session_;
  Registry registry_;
  PeerLimiter refusals_;
  std::optional<Round> round_;
  uint64_t next_task_id_;
  std::mt19937_64 rng_;
  int64_t up_connections_ = 0;
  RelayLoad load_;
  absl::Time load_at_ = absl::InfinitePast();
  RelayCounters counters_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_RELAY_H_
