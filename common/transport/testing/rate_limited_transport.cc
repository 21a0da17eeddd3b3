#include "common/transport/testing/rate_limited_transport.h"

#include <algorithm>
#include <utility>

namespace fedge {
namespace {
constexpr int64_t kSegmentBytes = 1460;
// Per message: ZeroMQ framing, CURVE's box, TCP/IP headers, roughly.
constexpr int64_t kOverheadBytes = 80;

int64_t Bytes(const Packet& p) {
  int64_t n = kOverheadBytes;
  for (const std::string& f : p.frames) n += static_cast<int64_t>(f.size()) + 9;
  return n;
}
}  // namespace

RateLimitedTransport::RateLimitedTransport(std::unique_ptr<Transport> inner,
                                           const LinkOptions& options,
                                           std::function<absl::Time()> clock)
    : inner_(std::move(inner)), options_(options), clock_(std::move(clock)), rng_(options.seed) {}

absl::Time RateLimitedTransport::Schedule(int64_t bytes, absl::Time start, absl::Time* free,
                                          absl::Time* last) {
  absl::Time begin = std::max(start, *free);
  absl::Duration transfer = options_.bits_per_second > 0
                                ? absl::Seconds(8.0 * bytes / options_.bits_per_second)
                                : absl::ZeroDuration();
  if (options_.segment_loss > 0) {
    std::bernoulli_distribution lost(options_.segment_loss);
    for (int64_t s = 0; s < (bytes + kSegmentBytes - 1) / kSegmentBytes; ++s) {
      for (absl::Duration rto = options_.retransmit_after; lost(rng_); rto *= 2) {
        transfer += rto;
        ++counts_.segments_lost;
      }
    }
  }
  *free = begin + transfer;
  absl::Duration delay = options_.latency;
  if (options_.jitter > absl::ZeroDuration()) {
    std::uniform_real_distribution<double> j(-1, 1);
    delay += j(rng_) * options_.jitter;
  }
  // A stream delivers in order.
  *last = std::max(*last, *free + std::max(absl::ZeroDuration(), delay));
  return *last;
}

absl::Status RateLimitedTransport::FlushUp(absl::Time now) {
  absl::Status status = absl::OkStatus();
  while (!up_.empty() && up_.front().arrives <= now) {
    absl::Status sent = inner_->Send(std::move(up_.front().packet));
    if (!sent.ok() && status.ok()) status = sent;
    up_.pop_front();
  }
  return status;
}

absl::Status RateLimitedTransport::Send(Packet packet) {
  FlattenSharedFrames(&packet);
  const absl::Time now = clock_();
  const int64_t bytes = Bytes(packet);
  counts_.up_bytes += bytes;
  up_.push_back({Schedule(bytes, now, &up_free_, &up_last_), std::move(packet)});
  return FlushUp(now);
}

absl::StatusOr<std::optional<Packet>> RateLimitedTransport::Receive(absl::Duration) {
  const absl::Time now = clock_();
  (void)FlushUp(now);
  while (true) {
    absl::StatusOr<std::optional<Packet>> in = inner_->Receive(absl::ZeroDuration());
    if (!in.ok()) return in.status();
    if (!in->has_value()) break;
    const int64_t bytes = Bytes(**in);
    counts_.down_bytes += bytes;
    // The coordinator sent it just now: it starts down the link when the
    // link is free.
    down_.push_back({Schedule(bytes, now, &down_free_, &down_last_), std::move(**in)});
  }
  if (down_.empty() || down_.front().arrives > now) return std::optional<Packet>();
  Packet p = std::move(down_.front().packet);
  down_.pop_front();
  return std::optional<Packet>(std::move(p));
}

}  // namespace fedge
