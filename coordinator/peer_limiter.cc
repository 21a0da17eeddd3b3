#include "coordinator/peer_limiter.h"

#include <algorithm>

namespace fedge {

bool PeerLimiter::Allow(const std::string& peer, absl::Time now) {
  auto it = buckets_.find(peer);
  if (it == buckets_.end()) {
    if (buckets_.size() >= options_.max_peers) Evict(now);
    it = buckets_.emplace(peer, Bucket{options_.burst, now, 0}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::min(options_.burst,
                      b.tokens + options_.per_second * absl::ToDoubleSeconds(now - b.refilled));
  b.refilled = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    b.denied_in_a_row = 0;
    return true;
  }
  ++b.denied_in_a_row;
  return false;
}

bool PeerLimiter::FirstDenial(const std::string& peer) const {
  auto it = buckets_.find(peer);
  return it != buckets_.end() && it->second.denied_in_a_row == 1;
}

void PeerLimiter::Evict(absl::Time now) {
  // Buckets that would be full by now hold nothing worth keeping.
  for (auto it = buckets_.begin(); it != buckets_.end();) {
    const double tokens =
        it->second.tokens + options_.per_second * absl::ToDoubleSeconds(now - it->second.refilled);
    it = tokens >= options_.burst ? buckets_.erase(it) : std::next(it);
  }
  // Still full of busy peers: forget the one with most tokens.
  if (buckets_.size() >= options_.max_peers) {
    auto fullest = std::max_element(buckets_.begin(), buckets_.end(), [](const auto& a, const auto& b) {
      return a.second.tokens < b.second.tokens;
    });
    buckets_.erase(fullest);
  }
}

}  // namespace fedge
