#ifndef FEDGE_COMMON_TRANSPORT_FAILOVER_TRANSPORT_H_
#define FEDGE_COMMON_TRANSPORT_FAILOVER_TRANSPORT_H_

// An agent's link to one of several endpoints (a relay, another relay, the
// root), one at a time. Failover() drops the current connection and
// connects to the next endpoint in the list, round robin; connections()
// counts every connection made, so the agent loop sees a new link and
// registers again on it. The agent loop decides when (design 4.6: no word
// from its endpoint for the failover timeout).
//
//   ASSIGN_OR_RETURN(auto link, FailoverTransport::Create(
//       {"tcp://relay-a:7071", "tcp://relay-b:7071"},
//       [&](const std::string& endpoint) { return ConnectTo(endpoint); }));
//
// Owned and used by one thread, like the transports it wraps.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/transport/transport.h"

namespace fedge {

class FailoverTransport : public Transport {
 public:
  using Connector =
      std::function<absl::StatusOr<std::unique_ptr<Transport>>(const std::string& endpoint)>;

  // Connects to the first endpoint (which must succeed: a malformed endpoint
  // or key is a configuration error, not a failure to fail over from).
  static absl::StatusOr<std::unique_ptr<FailoverTransport>> Create(
      std::vector<std::string> endpoints, Connector connect);

  absl::Status Send(Packet packet) override;
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override;
  int64_t connections() const override;

  // Moves to the next endpoint. On error (the next endpoint cannot even be
  // set up) the current connection stays.
  absl::Status Failover();
  const std::string& endpoint() const { return endpoints_[current_]; }
  size_t endpoint_count() const { return endpoints_.size(); }

 private:
  FailoverTransport(std::vector<std::string> endpoints, Connector connect,
                    std::unique_ptr<Transport> first);

  std::vector<std::string> endpoints_;
  Connector connect_;
  std::unique_ptr<Transport> link_;
  size_t current_ = 0;
  int64_t earlier_connections_ = 0;  // made by the links before this one
};

}  // namespace fedge

#endif  // FEDGE_COMMON_TRANSPORT_FAILOVER_TRANSPORT_H_
