#include "coordinator/model_state.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fedge {
namespace {

ModelState TwoShards() {
  ModelState m;
  m.shards = {{"fc1.weight", 0, {2, 2}, {0, 0, 0, 0}}, {"fc2.weight", 1, {2}, {1, 1}}};
  return m;
}

TEST(ModelStateTest, ApplySerializeParse) {
  ModelState m = TwoShards();
  std::vector<ShardResult> deltas(2);
  deltas[1].updated = true;
  deltas[1].delta = {0.5f, -1.0f};
  ASSERT_TRUE(m.Apply(deltas).ok());
  EXPECT_EQ(m.version, 1u);
  EXPECT_EQ(m.shards[1].values, (std::vector<float>{1.5f, 0.0f}));
  const std::string bytes = SerializeModel(m);
  absl::StatusOr<ModelState> back = ParseModel(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->version, 1u);
  EXPECT_EQ(back->shards[1].values, m.shards[1].values);
  EXPECT_EQ(back->shards[0].shape, (std::vector<uint32_t>{2, 2}));
  std::string corrupt = bytes;
  corrupt[corrupt.size() - 3] ^= 1;
  EXPECT_EQ(ParseModel(corrupt).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(ParseModel(bytes.substr(0, bytes.size() / 2)).ok());
  deltas[1].delta = {1.0f};
  EXPECT_FALSE(m.Apply(deltas).ok());
  EXPECT_EQ(m.version, 1u);
}

TEST(ModelStateTest, ShapesCarryEachShardsScale) {
  ModelState m = TwoShards();
  m.shards[0].values = {0.5f, -3.0f, 1.0f, 0.0f};
  const std::vector<ShardShape> shapes = m.Shapes();
  ASSERT_EQ(shapes.size(), 2u);
  EXPECT_EQ(shapes[0].elements, 4);
  EXPECT_EQ(shapes[0].scale, 3.0f);
  EXPECT_EQ(shapes[1].scale, 1.0f);
}

TEST(ModelStateTest, PoolStatisticsAddsTheSpreadBetweenTheAgents) {
  ModelState m;
  m.shards = {{"bn1.running_mean", 0, {2}, {0, 0}},
              {"bn1.running_var", 0, {2}, {1, 1}},
              {"bn2.running_mean", 1, {1}, {0}},
              {"bn2.running_sigma", 1, {1}, {2}},
              {"bn3.running_sigma", 2, {1}, {2}}};
  std::vector<ShardResult> deltas(5);
  auto set = [&deltas](int s, std::vector<float> delta, std::vector<float> spread) {
    deltas[s].updated = true;
    deltas[s].delta = std::move(delta);
    deltas[s].spread = std::move(spread);
  };
  // Two agents with equal samples: means -1 and 1, variances 1 and 3.
  set(0, {0, 0}, {1, 0});
  set(1, {1, 1}, {1, 0});
  // Sigmas 2 and 4 around means -2 and 2.
  set(2, {0}, {4});
  set(3, {1}, {1});
  // No running_mean beside it: left as it is.
  set(4, {0.5f}, {1});
  PoolStatistics(m, &deltas);
  EXPECT_FLOAT_EQ(deltas[1].delta[0], 2.0f);  // var 1 + 2 + 1 = 4, from 1
  EXPECT_FLOAT_EQ(deltas[1].delta[1], 1.0f);  // no spread between the means
  EXPECT_FLOAT_EQ(deltas[3].delta[0],
                  static_cast<float>(std::sqrt(9.0 + 1.0 + 2.0 / M_PI * 4.0) - 2.0));
  EXPECT_FLOAT_EQ(deltas[4].delta[0], 0.5f);
  EXPECT_FLOAT_EQ(deltas[0].delta[0], 0.0f);  // the means stay the mean
  // Without spreads (robust rules): the mean stays.
  deltas[2].spread.clear();
  deltas[3].delta = {1};
  PoolStatistics(m, &deltas);
  EXPECT_FLOAT_EQ(deltas[3].delta[0], 1.0f);
}

}  // namespace
}  // namespace fedge
