#include "common/transport/testing/rate_limited_transport.h"

#include <memory>
#include <string>

#include "common/transport/testing/in_memory_transport.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

Packet Of(std::string frame, std::string peer = "") {
  Packet p;
  p.peer = std::move(peer);
  p.frames.push_back(std::move(frame));
  return p;
}

// Steps a fake clock by 10 ms until the agent's link yields a packet;
// returns when it arrived.
absl::Time ArrivalOf(RateLimitedTransport& link, absl::Time* now, std::string* frame) {
  for (int i = 0; i < 100000; ++i) {
    absl::StatusOr<std::optional<Packet>> p = link.Receive(absl::ZeroDuration());
    EXPECT_TRUE(p.ok());
    if (p->has_value()) {
      *frame = (**p).frames[0];
      return *now;
    }
    *now += absl::Milliseconds(10);
  }
  return absl::InfiniteFuture();
}

TEST(RateLimitedTransportTest, BandwidthQueuesSmallRepliesBehindALargeMessage) {
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  absl::Time now = absl::FromUnixSeconds(100);
  const absl::Time t0 = now;
  RateLimitedTransport link(net.Connect("a"), {/*bits_per_second=*/256000}, [&] { return now; });
  // 64 kB down at 256 kbit/s: ~2 s; the 10-byte reply behind it waits.
  ASSERT_TRUE(server->Send(Of(std::string(64000, 'x'), "a")).ok());
  ASSERT_TRUE(server->Send(Of("small", "a")).ok());
  std::string frame;
  const absl::Time big = ArrivalOf(link, &now, &frame);
  EXPECT_EQ(frame.size(), 64000u);
  EXPECT_NEAR(absl::ToDoubleSeconds(big - t0), 2.0, 0.05);
  const absl::Time small = ArrivalOf(link, &now, &frame);
  EXPECT_EQ(frame, "small");
  EXPECT_LT(small - big, absl::Milliseconds(20));
  // The uplink is its own direction: a send goes out at once when idle.
  ASSERT_TRUE(link.Send(Of("up")).ok());
  now += absl::Milliseconds(10);
  ASSERT_TRUE(link.Receive(absl::ZeroDuration()).ok());
  absl::StatusOr<std::optional<Packet>> up = server->Receive(absl::ZeroDuration());
  ASSERT_TRUE(up.ok() && up->has_value());
}

TEST(RateLimitedTransportTest, LatencyJitterAndLossDelayButNeverLoseOrReorder) {
  InMemoryNetwork net;
  std::unique_ptr<Transport> server = net.Bind();
  absl::Time now = absl::FromUnixSeconds(100);
  LinkOptions options;
  options.bits_per_second = 0;
  options.latency = absl::Milliseconds(100);
  options.jitter = absl::Milliseconds(20);
  options.segment_loss = 0.05;
  options.seed = 3;
  RateLimitedTransport link(net.Connect("a"), options, [&] { return now; });
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(server->Send(Of(std::to_string(i) + std::string(3000, '.'), "a")).ok());
  const absl::Time t0 = now;
  std::string frame;
  for (int i = 0; i < 50; ++i) {
    const absl::Time at = ArrivalOf(link, &now, &frame);
    EXPECT_EQ(frame.substr(0, frame.find('.')), std::to_string(i));
    if (i == 0) EXPECT_GE(at - t0, absl::Milliseconds(80));
  }
  // 150 segments at 5%: some were lost and sent again.
  EXPECT_GT(link.counts().segments_lost, 0);
}

}  // namespace
}  // namespace fedge
