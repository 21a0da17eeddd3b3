#ifndef FEDGE_COMMON_TRANSPORT_H_
#define FEDGE_COMMON_TRANSPORT_H_

// The seam between the protocol logic and the network. The coordinator's
// transport is bound and talks to many peers (ROUTER); an agent's transport
// is connected to one coordinator (DEALER). Implementations: ZeroMQ
// (zmq_transport.h), in-memory for tests (in_memory_transport.h), and a
// fault-injecting wrapper (faulty_transport.h).
//
// A transport is owned and used by one thread (as ZeroMQ sockets must be).

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedge {

struct Packet {
  // On the coordinator side: the peer it came from or goes to. Unused on the
  // agent side.
  std::string peer;
  // The identity the transport authenticated for `peer` (the device id its
  // CURVE key is enrolled under), empty when the link is not authenticated.
  std::string authenticated_id;
  std::vector<std::string> frames;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Queues a packet for sending. kUnavailable when the peer is unknown or
  // the link is down; the packet is then lost (the protocol retries).
  virtual absl::Status Send(Packet packet) = 0;
  // Waits up to `timeout` for a packet; nullopt when none arrived.
  virtual absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) = 0;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_TRANSPORT_H_
