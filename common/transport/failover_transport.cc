#include "common/transport/failover_transport.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace fedge {

absl::StatusOr<std::unique_ptr<FailoverTransport>> FailoverTransport::Create(
    std::vector<std::string> endpoints, Connector connect) {
  if (endpoints.empty()) return absl::InvalidArgumentError("no endpoints to connect to");
  absl::StatusOr<std::unique_ptr<Transport>> first = connect(endpoints[0]);
  if (!first.ok()) return first.status();
  return std::unique_ptr<FailoverTransport>(
      new FailoverTransport(std::move(endpoints), std::move(connect), std::move(*first)));
}

FailoverTransport::FailoverTransport(std::vector<std::string> endpoints, Connector connect,
                                     std::unique_ptr<Transport> first)
    : endpoints_(std::move(endpoints)), connect_(std::move(connect)), link_(std::move(first)) {}

absl::Status FailoverTransport::Send(Packet packet) { return link_->Send(std::move(packet)); }

absl::StatusOr<std::optional<Packet>> FailoverTransport::Receive(absl::Duration timeout) {
  return link_->Receive(timeout);
}

int64_t FailoverTransport::connections() const {
  return earlier_connections_ + link_->connections();
}

absl::Status FailoverTransport::Failover() {
  const size_t next = (current_ + 1) % endpoints_.size();
  absl::StatusOr<std::unique_ptr<Transport>> link = connect_(endpoints_[next]);
  if (!link.ok()) {
    return absl::UnavailableError(absl::StrCat("cannot fail over to ", endpoints_[next], ": ",
                                               link.status().message()));
  }
  earlier_connections_ += link_->connections();
  link_.reset();  // closes the old connection before the new one speaks
  link_ = std::move(*link);
  current_ = next;
  return absl::OkStatus();
}

}  // namespace fedge
