#ifndef FEDGE_COORDINATOR_PEER_LIMITER_H_
#define FEDGE_COORDINATOR_PEER_LIMITER_H_

// A token bucket per peer for the coordinator's refusals: each refused
// message (malformed, impostor, unknown session...) takes a token; tokens
// come back at `per_second` up to `burst`. A peer out of tokens gets no
// Reject and no log line until it has tokens again, so a peer that floods
// invalid messages costs the event loop a decode each, not a reply each,
// and cannot fill the log. Memory is bounded: at most `max_peers` buckets,
// the fullest (the most idle) dropped first.
//
//   PeerLimiter limiter({});
//   if (limiter.Allow(peer, now)) Send(peer, Reject{...}); else ++suppressed;
//
// Pure: takes `now`. Not thread-safe.

#include <cstddef>
#include <map>
#include <string>

#include "absl/time/time.h"

namespace fedge {

struct PeerLimiterOptions {
  double per_second = 5;
  double burst = 50;
  size_t max_peers = 100000;
};

class PeerLimiter {
 public:
  explicit PeerLimiter(const PeerLimiterOptions& options) : options_(options) {}

  // Takes a token from `peer`'s bucket; false when it has none.
  bool Allow(const std::string& peer, absl::Time now);
  // True exactly once per stretch of denials, at the first one (log it).
  bool FirstDenial(const std::string& peer) const;

  size_t peers() const { return buckets_.size(); }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled;
    int64_t denied_in_a_row = 0;
  };
  void Evict(absl::Time now);

  PeerLimiterOptions options_;
  std::map<std::string, Bucket> buckets_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_PEER_LIMITER_H_
