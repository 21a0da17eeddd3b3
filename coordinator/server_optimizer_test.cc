#include "coordinator/server_optimizer.h"

#include <cmath>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(ServerOptimizerTest, FedAvgPassesThrough) {
  ServerOptimizer opt({});
  std::vector<ShardResult> d(1);
  d[0].updated = true;
  d[0].delta = {0.5f, -2.0f};
  opt.Transform({"fc.weight", "fc.beta"}, &d);
  EXPECT_EQ(d[0].delta, (std::vector<float>{0.5f, -2.0f}));
}

TEST(ServerOptimizerTest, FedAvgStepsByItsServerLearningRate) {
  absl::StatusOr<ServerOptimizerOptions> o = ParseServerOptimizer("fedavg", 2, 0.9);
  ASSERT_TRUE(o.ok());
  ServerOptimizer opt(*o);
  std::vector<ShardResult> d(2);
  d[0].updated = d[1].updated = true;
  d[0].delta = {0.5f, -2.0f};
  d[1].delta = {0.25f};
  opt.Transform({"fc.weight", "fc.running_mean"}, &d);
  EXPECT_EQ(d[0].delta, (std::vector<float>{1.0f, -4.0f}));
  EXPECT_EQ(d[1].delta, (std::vector<float>{0.25f}));  // statistics as they are
  EXPECT_EQ(ParseServerOptimizer("fedavg", 0, 0.9)->learning_rate, 1.0);
  EXPECT_EQ(ParseServerOptimizer("fedadam", 0, 0.9)->learning_rate, 1e-2);
}

TEST(ServerOptimizerTest, FedAdamStepsByHand) {
  ServerOptimizerOptions o;
  o.kind = ServerOptimizerKind::kFedAdam;
  o.learning_rate = 0.1;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.epsilon = 1e-3;
  ServerOptimizer opt(o);
  std::vector<ShardResult> d(2);
  d[0].updated = true;
  d[0].delta = {1.0f};
  opt.Transform({"fc.weight", "fc.beta"}, &d);
  // m = 0.1, v = 0.01: step = 0.1 * 0.1 / (0.1 + 0.001)
  EXPECT_NEAR(d[0].delta[0], 0.01 / 0.101, 1e-6);
  EXPECT_FALSE(d[1].updated);
  d[0].delta = {1.0f};
  opt.Transform({"fc.weight", "fc.beta"}, &d);
  // m = 0.19, v = 0.0199
  EXPECT_NEAR(d[0].delta[0], 0.1 * 0.19 / (std::sqrt(0.0199) + 1e-3), 1e-6);
}

TEST(ServerOptimizerTest, FedAvgMAccumulatesMomentum) {
  ServerOptimizerOptions o;
  o.kind = ServerOptimizerKind::kFedAvgM;
  o.learning_rate = 1.0;
  o.momentum = 0.5;
  ServerOptimizer opt(o);
  std::vector<ShardResult> d(1);
  d[0].updated = true;
  d[0].delta = {1.0f, -2.0f};
  opt.Transform({"fc.weight"}, &d);
  EXPECT_EQ(d[0].delta, (std::vector<float>{1.0f, -2.0f}));
  d[0].delta = {1.0f, 0.0f};
  opt.Transform({"fc.weight"}, &d);
  // m = 0.5 * m + delta
  EXPECT_EQ(d[0].delta, (std::vector<float>{1.5f, -1.0f}));
  // A round that does not update the shard leaves its momentum alone.
  d[0].updated = false;
  d[0].delta = {7.0f, 7.0f};
  opt.Transform({"fc.weight"}, &d);
  EXPECT_EQ(d[0].delta, (std::vector<float>{7.0f, 7.0f}));
  d[0].updated = true;
  d[0].delta = {0.0f, 0.0f};
  opt.Transform({"fc.weight"}, &d);
  EXPECT_EQ(d[0].delta, (std::vector<float>{0.75f, -0.5f}));
}

TEST(ServerOptimizerTest, StatisticsPassThroughEveryOptimizer) {
  for (ServerOptimizerKind kind : {ServerOptimizerKind::kFedAvgM, ServerOptimizerKind::kFedAdam}) {
    ServerOptimizerOptions o;
    o.kind = kind;
    o.learning_rate = 3.0;
    ServerOptimizer opt(o);
    std::vector<ShardResult> d(4);
    for (auto& r : d) {
      r.updated = true;
      r.delta = {0.25f};
    }
    const std::vector<std::string> names = {"conv1.running_mean", "conv1.running_sigma",
                                            "bn.running_var", "conv1.weight"};
    for (int round = 0; round < 2; ++round) {
      opt.Transform(names, &d);
      for (int s = 0; s < 3; ++s) EXPECT_EQ(d[s].delta[0], 0.25f) << names[s];
      EXPECT_NE(d[3].delta[0], 0.25f);
      d[3].delta = {0.25f};
    }
  }
  EXPECT_TRUE(IsStatisticsShard("l1.running_sigma"));
  EXPECT_FALSE(IsStatisticsShard("l1.weight"));
  EXPECT_FALSE(IsStatisticsShard("running_mean_weight"));
}

}  // namespace
}  // namespace fedge
