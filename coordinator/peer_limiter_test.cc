#include "coordinator/peer_limiter.h"

#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(PeerLimiterTest, BurstThenRefillPerPeer) {
  PeerLimiter limiter({/*per_second=*/2, /*burst=*/3, /*max_peers=*/10});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Allow("flood", t0));
  EXPECT_FALSE(limiter.Allow("flood", t0));
  EXPECT_TRUE(limiter.FirstDenial("flood"));
  EXPECT_FALSE(limiter.Allow("flood", t0));
  EXPECT_FALSE(limiter.FirstDenial("flood"));  // logged once per stretch
  EXPECT_TRUE(limiter.Allow("honest", t0));    // others keep their own bucket
  EXPECT_TRUE(limiter.Allow("flood", t0 + absl::Milliseconds(500)));  // one token back
  EXPECT_FALSE(limiter.Allow("flood", t0 + absl::Milliseconds(500)));
}

TEST(PeerLimiterTest, MemoryStaysBounded) {
  PeerLimiter limiter({1, 2, /*max_peers=*/100});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  for (int i = 0; i < 10000; ++i) {
    limiter.Allow("peer-" + std::to_string(i), t0 + absl::Milliseconds(i));
    ASSERT_LE(limiter.peers(), 100u);
  }
}

}  // namespace
}  // namespace fedge
