#include "common/transport/testing/in_memory_transport.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace fedge {

class InMemoryNetwork::Endpoint : public Transport {
 public:
  Endpoint(InMemoryNetwork* net, std::string identity)
      : net_(net), identity_(std::move(identity)) {}

  absl::Status Send(Packet packet) override {
    // Shared frames stay shared in the queue and are copied out on receipt:
    // a relay's fan-out of one model to thousands of in-memory agents holds
    // one copy, not thousands.
    if (identity_.empty()) {  // server -> client
      const std::string to = packet.peer;
      packet.peer.clear();
      packet.authenticated_id.clear();
      return net_->DeliverChecked(to, std::move(packet));
    }
    packet.peer = identity_;
    packet.authenticated_id = identity_;
    return net_->DeliverChecked("", std::move(packet));
  }

  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override {
    Packet packet;
    if (!net_->Take(identity_, timeout, &packet)) return std::optional<Packet>();
    FlattenSharedFrames(&packet);
    return std::optional<Packet>(std::move(packet));
  }

 private:
  InMemoryNetwork* net_;
  std::string identity_;
};

std::unique_ptr<Transport> InMemoryNetwork::Bind() {
  absl::MutexLock lock(&mu_);
  queues_[""] = Queue();
  return std::make_unique<Endpoint>(this, "");
}

std::unique_ptr<Transport> InMemoryNetwork::Connect(const std::string& identity) {
  absl::MutexLock lock(&mu_);
  queues_[identity];
  return std::make_unique<Endpoint>(this, identity);
}

void InMemoryNetwork::SetConnected(const std::string& identity, bool connected) {
  absl::MutexLock lock(&mu_);
  queues_[identity].connected = connected;
}

int64_t InMemoryNetwork::delivered() const {
  absl::MutexLock lock(&mu_);
  return delivered_;
}

absl::Status InMemoryNetwork::DeliverChecked(const std::string& to, Packet packet) {
  absl::MutexLock lock(&mu_);
  auto it = queues_.find(to);
  if (it == queues_.end()) {
    return absl::UnavailableError(absl::StrCat("no peer '", to, "'"));
  }
  const std::string& from = to.empty() ? packet.peer : to;
  auto sender = queues_.find(from);
  if (!it->second.connected || (sender != queues_.end() && !sender->second.connected)) {
    return absl::OkStatus();  // lost in the network, as on a real link
  }
  it->second.packets.push_back(std::move(packet));
  ++delivered_;
  return absl::OkStatus();
}

bool InMemoryNetwork::Take(const std::string& at, absl::Duration timeout, Packet* out) {
  absl::MutexLock lock(&mu_);
  auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = queues_.find(at);
    return it != queues_.end() && !it->second.packets.empty();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return false;
  Queue& q = queues_[at];
  *out = std::move(q.packets.front());
  q.packets.pop_front();
  return true;
}

}  // namespace fedge
