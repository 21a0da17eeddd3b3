#ifndef FEDGE_COORDINATOR_REGISTRY_H_
#define FEDGE_COORDINATOR_REGISTRY_H_

// The coordinator's record of agents: who registered, with what memory
// budget, cores and samples, under which session, and when each was last
// heard from. Liveness comes from heartbeats (any message counts): an agent
// silent for longer than the timeout is declared dead and must register
// again. Pure: takes `now` and decoded messages, does no I/O.
//
//   Registry registry({.heartbeat_interval = absl::Seconds(1)});
//   absl::StatusOr<Welcome> w = registry.OnRegister("board-1", "board-1", reg, now);
//   ...
//   for (const std::string& dead : registry.Expire(now)) Log(dead);
//
// Not thread-safe: owned by the coordinator's event loop.

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/wire/messages.h"

namespace fedge {

struct RegistryOptions {
  absl::Duration heartbeat_interval = absl::Seconds(1);
  // Silent this long (several missed heartbeats) means dead.
  absl::Duration timeout = absl::Seconds(5);
  // Session ids are random 64-bit numbers from the kernel's CSPRNG, never
  // 0, so nobody can guess another device's; a non-zero seed makes them a
  // reproducible (and guessable) sequence, for tests only.
  uint64_t session_seed = 0;
};

struct AgentRecord {
  std::string device_id;
  Register registration;
  uint64_t session_id = 0;
  // Where replies go: the routing id of the connection it registered from.
  std::string route;
  absl::Time registered_at;
  absl::Time last_seen;
  bool live = true;
  uint64_t busy_task = 0;
  // A relay aggregator (registered with a relay load): it stands for the
  // agents behind it; its registration's samples and memory budget follow
  // its heartbeats (their sum, the smallest of theirs).
  bool relay = false;
  RelayLoad relay_load;
};

class Registry {
 public:
  explicit Registry(const RegistryOptions& options);

  // Registers (or re-registers, with a fresh session) `device_id`.
  // `authenticated_id` is what the transport vouched for (empty on
  // unauthenticated links): a device may only register as itself.
  // `route` is the connection's routing id (empty: the device id).
  absl::StatusOr<Welcome> OnRegister(const std::string& device_id,
                                     const std::string& authenticated_id,
                                     const Register& registration, absl::Time now,
                                     const std::string& route = "");

  // Any message from a registered agent in its current session: marks it
  // live and seen. kNotFound for an unknown device or a stale session (for
  // instance after a coordinator restart): the agent must register again.
  absl::Status OnHeard(const std::string& device_id, uint64_t session_id,
                       absl::Time now);
  absl::Status OnHeartbeat(const std::string& device_id, uint64_t session_id,
                           const Heartbeat& heartbeat, absl::Time now);

  // Marks agents silent for longer than the timeout as dead and returns
  // their ids (each once). Looks at every agent at most once per
  // timeout / 8 (the service calls it on every packet: with 10,000 agents a
  // sweep each time would cost more than the packets), so an agent is
  // declared dead between timeout and 1.125 x timeout after it fell silent.
  std::vector<std::string> Expire(absl::Time now);

  const AgentRecord* Find(const std::string& device_id) const;
  std::vector<const AgentRecord*> LiveAgents() const;
  size_t registered() const { return agents_.size(); }
  size_t live() const { return live_; }
  // Live agents, counting those behind live relays rather than the relays.
  size_t live_agents() const;
  // Ids that registered as relays (few; their records say whether they are
  // still relays and live).
  const std::vector<std::string>& relays() const { return relays_; }

  // For checkpoints: the records.
  const std::map<std::string, AgentRecord>& agents() const { return agents_; }

 private:
  uint64_t NewSessionId();

  RegistryOptions options_;
  std::map<std::string, AgentRecord> agents_;
  std::mt19937_64 sessions_;  // only with a session seed
  absl::Time next_sweep_ = absl::InfinitePast();
  size_t live_ = 0;
  std::vector<std::string> relays_;  // ids registered as relays (few)
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_REGISTRY_H_
