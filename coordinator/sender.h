#ifndef FEDGE_COORDINATOR_SENDER_H_
#define FEDGE_COORDINATOR_SENDER_H_

// Who may speak for a device: the device id a message names, the routing id
// of the connection it came on and (with CURVE) the id its key is enrolled
// under must all agree, for every message, not only Register. The root and
// the relays check every packet with it.

#include "absl/status/status.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"

namespace fedge {

// OK, or an error tagged RejectReason::kIdentityMismatch saying which ids
// disagree.
absl::Status CheckSender(const Packet& packet, const Message& message);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SENDER_H_
