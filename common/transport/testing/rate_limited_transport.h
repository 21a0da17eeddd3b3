#ifndef FEDGE_COMMON_RATE_LIMITED_TRANSPORT_H_
#define FEDGE_COMMON_RATE_LIMITED_TRANSPORT_H_

// Wraps an agent's Transport in a slow, lossy link on a caller's clock (a
// fake one in simulations), modelling what a TCP stream over such a link
// does to whole messages: each direction carries one message at a time at
// `bits_per_second` (so a reply queues behind a large task, as it does on a
// real connection), each arrives `latency` +- `jitter` after its last byte
// left, in order, and each 1460-byte segment is lost with probability
// `segment_loss` and sent again after `retransmit_after` (doubling for a
// segment lost again). Nothing is lost for good: TCP retransmits.
//
//   RateLimitedTransport link(net.Connect("board-1"), {256000}, [&] { return now; });
//
// Seeded, so a failing run replays exactly. Not thread-safe, like the
// transport it wraps.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <random>

#include "common/transport/transport.h"

namespace fedge {

struct LinkOptions {
  int64_t bits_per_second = 256000;  // each direction; 0: unlimited
  absl::Duration latency = absl::ZeroDuration();  // one way
  absl::Duration jitter = absl::ZeroDuration();   // uniform in [-jitter, +jitter]
  double segment_loss = 0;
  absl::Duration retransmit_after = absl::Milliseconds(200);
  uint64_t seed = 1;
};

struct LinkCounts {
  int64_t up_bytes = 0, down_bytes = 0, segments_lost = 0;
};

class RateLimitedTransport : public Transport {
 public:
  RateLimitedTransport(std::unique_ptr<Transport> inner, const LinkOptions& options,
                       std::function<absl::Time()> clock);

  absl::Status Send(Packet packet) override;
  // Returns a packet whose last byte has arrived by now; never waits (the
  // caller's clock moves time).
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override;

  const LinkCounts& counts() const { return counts_; }

 private:
  struct InFlight {
    absl::Time arrives;
    Packet packet;
  };
  // When a message of `bytes` that may start at `start` has arrived, with
  // the direction busy until `*free`.
  absl::Time Schedule(int64_t bytes, absl::Time start, absl::Time* free, absl::Time* last);
  absl::Status FlushUp(absl::Time now);

  std::unique_ptr<Transport> inner_;
  LinkOptions options_;
  std::function<absl::Time()> clock_;
  std::mt19937_64 rng_;
  std::deque<InFlight> up_, down_;
  absl::Time up_free_ = absl::InfinitePast(), down_free_ = absl::InfinitePast();
  absl::Time up_last_ = absl::InfinitePast(), down_last_ = absl::InfinitePast();
  LinkCounts counts_;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_RATE_LIMITED_TRANSPORT_H_
