#ifndef FEDGE_COORDINATOR_SENDER_H_
#define FEDGE_COORDINATOR_SENDER_H_

// Who may speak for a device: the device id a message names, the routing id
// of the connection it came on and (with CURVE) the id its key is enrolled
// under must all agree, for every message, not only Register. The root and
// the relays check every packet with it.

#include <set>
#include <string>

#include "absl/status/status.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"

namespace fedge {

// A key enrolled as a relay may also speak for "<its id>.<name>": one key
// shared by a pool of relays (a Kubernetes Deployment's replicas), each
// registering under its own name. Agents' keys speak for their id alone.
//
// OK, or an error tagged RejectReason::kIdentityMismatch saying which ids
// disagree. `relay_ids`: the ids enrolled as relays (null: none).
absl::Status CheckSender(const Packet& packet, const Message& message,
                         const std::set<std::string>* relay_ids = nullptr);

// Whether `device_id` is `enrolled` or, for a relay pool, "<enrolled>.<name>".
bool SpeaksFor(const std::string& enrolled, const std::string& device_id, bool relay_pool);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SENDER_H_
