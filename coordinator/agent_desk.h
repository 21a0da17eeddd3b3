#ifndef FEDGE_COORDINATOR_AGENT_DESK_H_
#define FEDGE_COORDINATOR_AGENT_DESK_H_

// The handling of agents' messages that the root coordinator and a relay
// share: decoding, the sender check (CheckSender), and after registration
// the session rules: an unknown device must register first; a message in
// the current session counts as hearing from the device; results and
// failures are bound to the device (its key, with CURVE) and the task, not
// to the session, so a result computed across a re-registration still
// counts; heartbeats in the current session are answered with NoTask;
// anything else is refused. What differs between the services goes through
// the services' overrides: registration (roles, logging, a task sent
// again), results and failures.
//
//   class CoordinatorService : private AgentDesk { ... };
//   HandleAgentMessage(packet, now, registry_, relay_ids, &counters_.malformed);
//
// Called from a service's one loop; not thread-safe.

#include <cstdint>
#include <set>
#include <string>

#include "absl/time/time.h"
#include "common/status/reject_reason.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"
#include "coordinator/registry.h"

namespace fedge {

class AgentDesk {
 public:
  virtual ~AgentDesk() = default;

 protected:
  // Decodes and handles one packet from an agent (or, at the root, a
  // relay). A message that does not decode is refused and counted in
  // `*malformed`. `relay_ids`: the ids enrolled as relays, as CheckSender
  // takes them (null: none).
  void HandleAgentMessage(const Packet& packet, absl::Time now, Registry& registry,
                          const std::set<std::string>* relay_ids, int64_t* malformed);

  // Answers `peer` with a Reject saying `text`.
  virtual void Refuse(const std::string& peer, RejectReason reason, const std::string& text,
                      absl::Time now) = 0;
  // Sends `body` to the agent at `peer` in `session`.
  virtual void SendToAgent(const std::string& peer, uint64_t session, Body body) = 0;
  // A Register whose sender checked out: roles, the registry, the answer.
  virtual void OnRegister(const Packet& packet, const Message& m, const Register& reg,
                          absl::Time now) = 0;
  virtual void OnResult(const std::string& peer, const Message& m, const TaskResult& result) = 0;
  virtual void OnFailed(const std::string& device, const TaskFailed& failed) = 0;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_AGENT_DESK_H_
