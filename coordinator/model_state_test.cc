#include "coordinator/model_state.h"

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

}  // namespace
}  // namespace fedge
