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
// hooks: registration (roles, logging, a task sent again), results and
// failures.
//
//   AgentDeskHooks hooks;
//   hooks.refuse = [&](const std::string& peer, RejectReason r, const std::string& text) {...};
//   ...
//   HandleAgentMessage(packet, now, registry, relay_ids, hooks, &malformed);
//
// Plain function; called from a service's one loop.

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "absl/time/time.h"
#include "common/status/reject_reason.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"
#include "coordinator/registry.h"

namespace fedge {

struct AgentDeskHooks {
  // Answers `peer` with a Reject saying `text`.
  std::function<void(const std::string& peer, RejectReason reason, const std::string& text)>
      refuse;
  // Sends `body` to `peer` in `session`.
  std::function<void(const std::string& peer, uint64_t session, Body body)> send;
  // A Register whose sender checked out (the hook applies roles and the
  // registry, and answers).
  std::function<void(const Packet& packet, const Message& m, const Register& reg)> on_register;
  std::function<void(const std::string& peer, const Message& m, const TaskResult& result)>
      on_result;
  std::function<void(const std::string& device, const TaskFailed& failed)> on_failed;
};

// Decodes and handles one packet from an agent (or, at the root, a relay).
// A message that does not decode is refused and counted in `*malformed`.
// `relay_ids`: the ids enrolled as relays, as CheckSender takes them (null:
// none).
void HandleAgentMessage(const Packet& packet, absl::Time now, Registry& registry,
                        const std::set<std::string>* relay_ids, const AgentDeskHooks& hooks,
                        int64_t* malformed);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_AGENT_DESK_H_
