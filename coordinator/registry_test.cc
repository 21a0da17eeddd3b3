#include "coordinator/registry.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(RegistryTest, ReregistrationGetsAFreshSession) {
  Registry registry(RegistryOptions{absl::Seconds(1), absl::Seconds(3)});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  const Welcome first =
      *registry.OnRegister("board-1", "", Register{1 << 20, 2, 50, "v"}, t0, "board-1/ab");
  EXPECT_EQ(first.heartbeat_interval_ms, 1000u);
  EXPECT_EQ(registry.Find("board-1")->route, "board-1/ab");
  const Welcome second = *registry.OnRegister("board-1", "", Register{2 << 20, 2, 50, "v"}, t0);
  EXPECT_NE(second.session_id, first.session_id);
  EXPECT_EQ(registry.Find("board-1")->route, "board-1");
  EXPECT_EQ(registry.registered(), 1u);
  EXPECT_EQ(registry.Find("board-1")->registration.memory_budget_bytes, 2u << 20);
  EXPECT_FALSE(registry.OnHeard("board-1", first.session_id, t0).ok());  // the old session
  EXPECT_TRUE(registry.OnHeartbeat("board-1", second.session_id, Heartbeat{42}, t0).ok());
  EXPECT_EQ(registry.Find("board-1")->busy_task, 42u);
}

TEST(RegistryTest, SessionIdsAreUnguessable) {
  // Two coordinators (or one restarted) hand out unrelated sessions, and no
  // session is a neighbour of another: knowing one's own says nothing of
  // another device's.
  Registry a(RegistryOptions{}), b(RegistryOptions{});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  std::vector<uint64_t> sessions;
  for (int i = 0; i < 64; ++i) {
    const std::string id = "board-" + std::to_string(i);
    sessions.push_back(a.OnRegister(id, "", Register{1, 1, 1, ""}, t0)->session_id);
    EXPECT_NE(sessions.back(), b.OnRegister(id, "", Register{1, 1, 1, ""}, t0)->session_id);
  }
  int high_bits = 0;
  for (size_t i = 0; i < sessions.size(); ++i) {
    EXPECT_NE(sessions[i], 0u);
    high_bits += sessions[i] >> 63;
    for (size_t j = 0; j < i; ++j) {
      const uint64_t gap = sessions[i] > sessions[j] ? sessions[i] - sessions[j]
                                                     : sessions[j] - sessions[i];
      EXPECT_GT(gap, 1u << 20) << i << " " << j;
    }
  }
  EXPECT_GT(high_bits, 8);  // spread over the whole 64-bit range
  EXPECT_LT(high_bits, 56);
}

TEST(RegistryTest, ExpiresOnlyTheSilent) {
  Registry registry(RegistryOptions{absl::Seconds(1), absl::Seconds(3)});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  const uint64_t a = registry.OnRegister("a", "", Register{1, 1, 1, ""}, t0)->session_id;
  registry.OnRegister("b", "", Register{1, 1, 1, ""}, t0).IgnoreError();
  ASSERT_TRUE(registry.OnHeard("a", a, t0 + absl::Seconds(2)).ok());
  const std::vector<std::string> dead = registry.Expire(t0 + absl::Seconds(4));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0], "b");
  EXPECT_EQ(registry.LiveAgents().size(), 1u);
  EXPECT_EQ(registry.LiveAgents()[0]->device_id, "a");
  EXPECT_EQ(registry.live(), 1u);
  // Heard again: live again, counted once.
  ASSERT_TRUE(registry.OnRegister("b", "", Register{1, 1, 1, ""}, t0 + absl::Seconds(4)).ok());
  ASSERT_TRUE(registry.OnRegister("b", "", Register{1, 1, 1, ""}, t0 + absl::Seconds(4)).ok());
  EXPECT_EQ(registry.live(), 2u);
  // "a" falls silent at t0 + 2 s: dead after 3 s, seen by the first sweep
  // at most timeout / 8 later.
  EXPECT_TRUE(registry.Expire(t0 + absl::Seconds(4.2)).empty());  // within the sweep interval
  EXPECT_TRUE(registry.Expire(t0 + absl::Seconds(4.9)).empty());  // swept: still alive
  const absl::Time late = t0 + absl::Seconds(5.01);
  std::vector<std::string> later = registry.Expire(late);
  for (double s = 0.1; later.empty() && s <= 3.0 / 8 + 0.01; s += 0.1) {
    later = registry.Expire(late + absl::Seconds(s));
  }
  EXPECT_EQ(later, std::vector<std::string>{"a"});
  EXPECT_EQ(registry.live(), 1u);
}

TEST(RegistryTest, DeviceMayOnlyRegisterAsItself) {
  Registry registry(RegistryOptions{});
  const absl::Time now = absl::FromUnixSeconds(1);
  const absl::StatusOr<Welcome> spoof =
      registry.OnRegister("board-2", "board-1", Register{1, 1, 1, ""}, now);
  EXPECT_EQ(spoof.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(spoof.status().message()), ::testing::HasSubstr("board-1"));
  EXPECT_TRUE(registry.OnRegister("board-1", "board-1", Register{1, 1, 1, ""}, now).ok());
  EXPECT_EQ(registry.OnHeard("board-1", 999, now).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.OnHeard("nobody", 1, now).code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fedge
