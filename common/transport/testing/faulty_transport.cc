#include "common/transport/testing/faulty_transport.h"

#include <utility>

namespace fedge {

FaultyTransport::FaultyTransport(std::unique_ptr<Transport> inner,
                                 const FaultOptions& options)
    : inner_(std::move(inner)), options_(options), rng_(options.seed) {}

bool FaultyTransport::Chance(double p) {
  return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p;
}

absl::Status FaultyTransport::Forward(Packet packet) {
  ++counts_.sent;
  return inner_->Send(std::move(packet));
}

absl::Status FaultyTransport::FlushDue() {
  const absl::Time now = Now();
  std::vector<std::pair<absl::Time, Packet>> keep;
  for (auto& [due, packet] : delayed_) {
    if (due <= now) {
      absl::Status status = Forward(std::move(packet));
      if (!status.ok()) return status;
    } else {
      keep.emplace_back(due, std::move(packet));
    }
  }
  delayed_ = std::move(keep);
  return absl::OkStatus();
}

absl::Status FaultyTransport::Send(Packet packet) {
  FlattenSharedFrames(&packet);
  if (absl::Status s = FlushDue(); !s.ok()) return s;
  if (disconnected_ || Chance(options_.drop)) {
    ++counts_.dropped;
    return absl::OkStatus();
  }
  if (Chance(options_.corrupt) && !packet.frames.empty()) {
    std::string& frame = packet.frames[rng_() % packet.frames.size()];
    if (!frame.empty()) {
      frame[rng_() % frame.size()] ^= static_cast<char>(1 + rng_() % 255);
      ++counts_.corrupted;
    }
  }
  if (Chance(options_.delay)) {
    ++counts_.delayed;
    delayed_.emplace_back(Now() + options_.delay_by, std::move(packet));
    return absl::OkStatus();
  }
  if (Chance(options_.reorder)) {
    ++counts_.reordered;
    held_.push_back(std::move(packet));
    return absl::OkStatus();
  }
  const bool twice = Chance(options_.duplicate);
  if (twice) {
    ++counts_.duplicated;
    if (absl::Status s = Forward(packet); !s.ok()) return s;
  }
  if (absl::Status s = Forward(std::move(packet)); !s.ok()) return s;
  std::vector<Packet> held = std::move(held_);
  held_.clear();
  for (Packet& p : held) {
    if (absl::Status s = Forward(std::move(p)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Packet>> FaultyTransport::Receive(absl::Duration timeout) {
  if (absl::Status s = FlushDue(); !s.ok()) return s;
  absl::StatusOr<std::optional<Packet>> packet = inner_->Receive(timeout);
  if (disconnected_ && packet.ok() && packet->has_value()) {
    return std::optional<Packet>();  // the link is down: it never arrived
  }
  return packet;
}

}  // namespace fedge
