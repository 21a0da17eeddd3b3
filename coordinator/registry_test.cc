#include "coordinator/registry.h"

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(RegistryTest, ReregistrationGetsAFreshSession) {
  Registry registry(RegistryOptions{absl::Seconds(1), absl::Seconds(3), 10});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  const Welcome first = *registry.OnRegister("board-1", "", Register{1 << 20, 2, 50, "v"}, t0);
  EXPECT_EQ(first.session_id, 10u);
  EXPECT_EQ(first.heartbeat_interval_ms, 1000u);
  const Welcome second = *registry.OnRegister("board-1", "", Register{2 << 20, 2, 50, "v"}, t0);
  EXPECT_EQ(second.session_id, 11u);
  EXPECT_EQ(registry.registered(), 1u);
  EXPECT_EQ(registry.Find("board-1")->registration.memory_budget_bytes, 2u << 20);
  EXPECT_FALSE(registry.OnHeard("board-1", 10, t0).ok());  // the old session
  EXPECT_TRUE(registry.OnHeartbeat("board-1", 11, Heartbeat{42}, t0).ok());
  EXPECT_EQ(registry.Find("board-1")->busy_task, 42u);
}

TEST(RegistryTest, ExpiresOnlyTheSilent) {
  Registry registry(RegistryOptions{absl::Seconds(1), absl::Seconds(3), 1});
  const absl::Time t0 = absl::FromUnixSeconds(100);
  const uint64_t a = registry.OnRegister("a", "", Register{1, 1, 1, ""}, t0)->session_id;
  registry.OnRegister("b", "", Register{1, 1, 1, ""}, t0).IgnoreError();
  ASSERT_TRUE(registry.OnHeard("a", a, t0 + absl::Seconds(2)).ok());
  const std::vector<std::string> dead = registry.Expire(t0 + absl::Seconds(4));
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0], "b");
  EXPECT_EQ(registry.LiveAgents().size(), 1u);
  EXPECT_EQ(registry.LiveAgents()[0]->device_id, "a");
}

}  // namespace
}  // namespace fedge
