#include "device_agent/drift.h"

#include <vector>

#include "gtest/gtest.h"

namespace fedge {
namespace {

ModelShard Shard(const std::string& name, int layer, std::vector<float> values) {
  ModelShard s;
  s.name = name;
  s.layer = layer;
  s.shape = {static_cast<uint32_t>(values.size())};
  s.values = std::move(values);
  return s;
}

// Two agents whose local data pull one weight in opposite directions: the
// fleet's mean displacement is what the server applied divided by its rate,
// and each agent's shift takes its own bias out of every step.
TEST(DriftCorrectionTest, ShiftIsTheFleetsMeanDisplacementMinusTheAgentsPerStep) {
  const double server_rate = 2;
  DriftCorrection a(server_rate), b(server_rate);
  const std::vector<ModelShard> x0 = {Shard("fc.weight", 0, {0.5f, -0.25f})};
  // Agent a moved +0.08 / 0; agent b -0.02 / +0.04, each in 4 steps at 1e-2.
  const std::vector<ModelShard> ya = {Shard("fc.weight", 0, {0.58f, -0.25f})};
  const std::vector<ModelShard> yb = {Shard("fc.weight", 0, {0.48f, -0.21f})};
  a.Record(x0, ya, {}, 7, 0, 4, 1e-2);
  b.Record(x0, yb, {}, 7, 0, 4, 1e-2);
  // x1 = x0 + 2 * mean(D): mean D = (+0.03, +0.02).
  const std::vector<ModelShard> x1 = {Shard("fc.weight", 0, {0.56f, -0.21f})};
  // Half the rate in the next round halves the shifts.
  const std::vector<ModelShard> sa = a.Shifts(x1, 8, 0, 5e-3);
  const std::vector<ModelShard> sb = b.Shifts(x1, 8, 0, 5e-3);
  ASSERT_EQ(sa.size(), 1u);
  ASSERT_EQ(sb.size(), 1u);
  EXPECT_EQ(sa[0].name, "fc.weight");
  // (mean D - D_a) / 4 / 2 = (-0.05, +0.02) / 8.
  EXPECT_NEAR(sa[0].values[0], -0.05 / 8, 1e-6);
  EXPECT_NEAR(sa[0].values[1], 0.02 / 8, 1e-6);
  EXPECT_NEAR(sb[0].values[0], 0.05 / 8, 1e-6);
  EXPECT_NEAR(sb[0].values[1], -0.02 / 8, 1e-6);
  // Over the fleet the shifts cancel.
  for (size_t k = 0; k < 2; ++k) EXPECT_NEAR(sa[0].values[k] + sb[0].values[k], 0, 1e-6);
  EXPECT_EQ(a.bytes(), 2 * static_cast<int64_t>(sizeof(float)));
}

TEST(DriftCorrectionTest, TheAppliedShiftsAreNotCountedAsTheAgentsOwnDisplacement) {
  // The agent's optimizer moved +0.01 in 5 steps; it also applied 5 shifts
  // of -0.002. The global model stayed put: the next shift is -0.01 / 5,
  // as it would have been without the earlier shifts.
  DriftCorrection d(1);
  const std::vector<ModelShard> x = {Shard("w", 0, {0.3f})};
  const std::vector<ModelShard> applied = {Shard("w", 0, {-0.002f})};
  const std::vector<ModelShard> y = {Shard("w", 0, {0.3f + 0.01f - 5 * 0.002f})};
  d.Record(x, y, applied, 1, 0, 5, 1e-3);
  const std::vector<ModelShard> shifts = d.Shifts(x, 2, 0, 1e-3);
  ASSERT_EQ(shifts.size(), 1u);
  EXPECT_NEAR(shifts[0].values[0], -0.01 / 5, 1e-6);
}

TEST(DriftCorrectionTest, NoShiftWithoutTheImmediatelyPreviousRound) {
  DriftCorrection d(1);
  const std::vector<ModelShard> x = {Shard("w", 0, {0.1f})};
  const std::vector<ModelShard> y = {Shard("w", 0, {0.2f})};
  EXPECT_TRUE(d.Shifts(x, 1, 0, 1e-3).empty());  // nothing recorded yet
  d.Record(x, y, {}, 3, 0, 5, 1e-3);
  EXPECT_TRUE(d.Shifts(x, 5, 0, 1e-3).empty());  // a round missed
  EXPECT_TRUE(d.Shifts(x, 3, 0, 1e-3).empty());  // the same version again
  EXPECT_TRUE(d.Shifts(x, 4, 1, 1e-3).empty());  // another shard plan
  const std::vector<ModelShard> other = {Shard("v", 0, {0.1f})};
  EXPECT_TRUE(d.Shifts(other, 4, 0, 1e-3).empty());  // another model
  const std::vector<ModelShard> longer = {Shard("w", 0, {0.1f, 0.2f})};
  EXPECT_TRUE(d.Shifts(longer, 4, 0, 1e-3).empty());
  EXPECT_FALSE(d.Shifts(x, 4, 0, 1e-3).empty());
}

TEST(DriftCorrectionTest, FrozenLayersAreNeitherKeptNorShifted) {
  DriftCorrection d(1);
  const std::vector<ModelShard> x = {Shard("conv.weight", 0, {0.1f, 0.2f, 0.3f}),
                                     Shard("fc.weight", 1, {0.4f})};
  std::vector<ModelShard> y = x;
  y[1].values[0] = 0.5f;
  d.Record(x, y, {}, 1, 1, 2, 1e-3);
  EXPECT_EQ(d.bytes(), static_cast<int64_t>(sizeof(float)));
  const std::vector<ModelShard> shifts = d.Shifts(x, 2, 1, 1e-3);
  ASSERT_EQ(shifts.size(), 1u);
  EXPECT_EQ(shifts[0].name, "fc.weight");
  // The global model did not move; the agent did (+0.1 in 2 steps).
  EXPECT_NEAR(shifts[0].values[0], -0.05, 1e-6);
}

}  // namespace
}  // namespace fedge
