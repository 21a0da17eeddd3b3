#ifndef FEDGE_COMMON_IN_MEMORY_TRANSPORT_H_
#define FEDGE_COMMON_IN_MEMORY_TRANSPORT_H_

// An in-process network for tests and fleet simulation: one bound server
// endpoint and any number of connected clients, each a Transport. Messages
// are delivered in order, instantly, unless a client is disconnected.
//
//   InMemoryNetwork net;
//   std::unique_ptr<Transport> server = net.Bind();
//   std::unique_ptr<Transport> agent = net.Connect("board-1");
//
// The network is thread-safe; each Transport it hands out belongs to one
// thread, like a socket.

#include <deque>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/transport/transport.h"

namespace fedge {

class InMemoryNetwork {
 public:
  InMemoryNetwork() = default;
  InMemoryNetwork(const InMemoryNetwork&) = delete;
  InMemoryNetwork& operator=(const InMemoryNetwork&) = delete;

  // The server side. At most one at a time; a new Bind replaces the old one's
  // queue (a restarted coordinator starts with nothing in flight).
  std::unique_ptr<Transport> Bind();
  // A client with this identity; its packets reach the server with
  // peer = authenticated_id = identity.
  std::unique_ptr<Transport> Connect(const std::string& identity);

  // While disconnected, packets to and from `identity` are lost.
  void SetConnected(const std::string& identity, bool connected);

  // Packets delivered so far (both directions), for tests.
  int64_t delivered() const;

 private:
  class Endpoint;
  struct Queue {
    std::deque<Packet> packets;
    bool connected = true;
  };

  absl::Status DeliverChecked(const std::string& to, Packet packet);
  bool Take(const std::string& at, absl::Duration timeout, Packet* out);

  mutable absl::Mutex mu_;
  // "" is the server's queue.
  std::map<std::string, Queue> queues_ ABSL_GUARDED_BY(mu_);
  int64_t delivered_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_IN_MEMORY_TRANSPORT_H_
