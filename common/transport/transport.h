#ifndef FEDGE_COMMON_TRANSPORT_H_
#define FEDGE_COMMON_TRANSPORT_H_

// The seam between the protocol logic and the network. The coordinator's
// transport is bound and talks to many peers (ROUTER); an agent's transport
// is connected to one coordinator (DEALER). Implementations: ZeroMQ
// (zmq_transport.h), in-memory for tests (in_memory_transport.h), and a
// fault-injecting wrapper (faulty_transport.h).
//
// A transport is owned and used by one thread (as ZeroMQ sockets must be).

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace fedge {

// `size` bytes at `offset` of a buffer that many packets share.
struct SharedFrame {
  std::shared_ptr<const std::string> buffer;
  size_t offset = 0;
  size_t size = 0;
};

struct Packet {
  // On the coordinator side: the peer (routing id) it came from or goes to.
  // Unused on the agent side. A peer's routing id is its device id,
  // optionally followed by '/' and a random per-connection nonce (the ZeroMQ
  // agent adds one so that no other connection can take its route).
  std::string peer;
  // The identity the transport authenticated for `peer` (the device id its
  // CURVE key is enrolled under), empty when the link is not authenticated.
  std::string authenticated_id;
  std::vector<std::string> frames;
  // Sent after `frames` without a copy: the transport holds a reference
  // until the bytes are out (the coordinator sends one round's model shards
  // to thousands of agents from one buffer each). Received packets carry
  // every frame in `frames`.
  std::vector<SharedFrame> shared_frames;
};

// Appends copies of `shared` to `frames` and empties `shared`.
inline void CopySharedFrames(std::vector<SharedFrame>* shared, std::vector<std::string>* frames) {
  for (const SharedFrame& f : *shared) frames->push_back(f.buffer->substr(f.offset, f.size));
  shared->clear();
}

// Moves `shared_frames` into `frames` by copy, for transports that keep or
// change frames themselves.
inline void FlattenSharedFrames(Packet* packet) {
  CopySharedFrames(&packet->shared_frames, &packet->frames);
}

// The device id a routing id names: what precedes the first '/'.
inline std::string DeviceOfRoute(const std::string& route) {
  return route.substr(0, route.find('/'));
}

class Transport {
 public:
  virtual ~Transport() = default;
  // Queues a packet for sending; never blocks. kUnavailable when the peer is
  // unknown or the link is down, kResourceExhausted when the peer's queue is
  // full (it does not read what it is sent); the packet is then lost (the
  // protocol retries).
  virtual absl::Status Send(Packet packet) = 0;
  // Waits up to `timeout` for a packet; nullopt when none arrived.
  virtual absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) = 0;
  // Connections established so far (an agent's link to the coordinator):
  // when it grows past 1 the link was re-established, and whatever was in
  // flight on the old connection may be lost. Updated by Receive.
  virtual int64_t connections() const { return 1; }
};

}  // namespace fedge

#endif  // FEDGE_COMMON_TRANSPORT_H_
