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
  opt.Transform(&d);
  EXPECT_EQ(d[0].delta, (std::vector<float>{0.5f, -2.0f}));
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
  opt.Transform(&d);
  // m = 0.1, v = 0.01: step = 0.1 * 0.1 / (0.1 + 0.001)
  EXPECT_NEAR(d[0].delta[0], 0.01 / 0.101, 1e-6);
  EXPECT_FALSE(d[1].updated);
  d[0].delta = {1.0f};
  opt.Transform(&d);
  // m = 0.19, v = 0.0199
  EXPECT_NEAR(d[0].delta[0], 0.1 * 0.19 / (std::sqrt(0.0199) + 1e-3), 1e-6);
}

}  // namespace
}  // namespace fedge
