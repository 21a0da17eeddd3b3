#include "coordinator/aggregator.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "common/status/reject_reason.h"
#include "common/codec/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

WireTensor Fp32(std::vector<float> values) {
  WireTensor t;
  t.name = "w";
  t.shape = {static_cast<uint32_t>(values.size())};
  EXPECT_TRUE(EncodeUpdate(values, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
  return t;
}

TEST(AggregatorTest, WeightsBySampleCount) {
  Aggregator agg({{"a", 3}, {"b", 2}}, AggregatorOptions());
  ASSERT_TRUE(agg.Add(0, Fp32({1, 2, 3}), 100).ok());
  ASSERT_TRUE(agg.Add(0, Fp32({4, 5, 6}), 300).ok());
  const std::vector<ShardResult> r = agg.Finish();
  ASSERT_TRUE(r[0].updated);
  EXPECT_THAT(r[0].delta, ElementsAre(3.25f, 4.25f, 5.25f));  // (1*100 + 4*300) / 400
  EXPECT_EQ(r[0].contributors, 2);
  EXPECT_FALSE(r[1].updated);  // nobody trained shard b
}

TEST(AggregatorTest, StalenessDiscountsLateResults) {
  AggregatorOptions options;
  options.staleness_exponent = 1.0;
  Aggregator agg({{"a", 1}}, options);
  ASSERT_TRUE(agg.Add(0, Fp32({0}), 100, /*staleness=*/0).ok());
  ASSERT_TRUE(agg.Add(0, Fp32({3}), 100, /*staleness=*/1).ok());  // weight 50
  EXPECT_FLOAT_EQ(agg.Finish()[0].delta[0], 1.0f);
}

TEST(AggregatorTest, RejectionsLeaveTheAggregateUntouched) {
  AggregatorOptions options;
  options.max_update_norm = 10;
  Aggregator agg({{"a", 2}}, options);
  ASSERT_TRUE(agg.Add(0, Fp32({1, 1}), 10).ok());
  EXPECT_THAT(std::string(agg.Add(0, Fp32({30, 40}), 10).message()), HasSubstr("norm 50"));
  WireTensor nan = Fp32({1, 1});
  const float bad = std::nanf("");
  std::memcpy(&nan.payload[4], &bad, 4);
  EXPECT_THAT(std::string(agg.Add(0, nan, 10).message()), HasSubstr("not finite"));
  EXPECT_FALSE(agg.Add(0, Fp32({1, 2, 3}), 10).ok());  // wrong size
  EXPECT_FALSE(agg.Add(3, Fp32({1, 1}), 10).ok());     // no such shard
  EXPECT_FALSE(agg.Add(0, Fp32({1, 1}), 0).ok());      // no samples
  EXPECT_EQ(agg.stats().accepted, 1);
  EXPECT_EQ(agg.stats().rejected, 5);
  EXPECT_THAT(agg.Finish()[0].delta, ElementsAre(1.0f, 1.0f));
}

TEST(AggregatorTest, DecodesCompressedUpdates) {
  Aggregator agg({{"a", 8}}, AggregatorOptions());
  std::vector<float> residual(8, 0.0f);
  WireTensor t;
  t.name = "w";
  t.shape = {8};
  const std::vector<float> v = {1, -1, 1, -1, 2, -2, 2, -2};
  ASSERT_TRUE(EncodeUpdate(v, {Codec::kSignEf, 1, 2}, 0, &residual, &t).ok());
  ASSERT_TRUE(agg.Add(0, t, 5).ok());
  EXPECT_THAT(agg.Finish()[0].delta, ElementsAre(1, -1, 1, -1, 2, -2, 2, -2));
}

TEST(AggregatorTest, RobustRulesResistAnOutlier) {
  for (AggregationRule rule : {AggregationRule::kMedian, AggregationRule::kTrimmedMean}) {
    AggregatorOptions options;
    options.rule = rule;
    options.trim_fraction = 0.2;
    Aggregator agg({{"a", 1, 10.0f}}, options);  // bound: 100 x 10
    for (float v : {1.0f, 2.0f, 3.0f, 4.0f, 1000.0f}) ASSERT_TRUE(agg.Add(0, Fp32({v}), 1).ok());
    // median 3; trimmed mean drops one from each end: (2 + 3 + 4) / 3 = 3.
    EXPECT_FLOAT_EQ(agg.Finish()[0].delta[0], 3.0f);
  }
}

TEST(AggregatorTest, UpdatesBeyondTheModelsScaleAreRefused) {
  // A shard whose largest value is 0.5: the bound is 100 x max(1, 0.5).
  Aggregator agg({{"a", 2, 0.5f}}, AggregatorOptions());
  EXPECT_EQ(agg.MaxAbs(0), 100.0f);
  ASSERT_TRUE(agg.Add(0, Fp32({100, -100}), 10).ok());
  const absl::Status over = agg.Add(0, Fp32({100.5f, 0}), 10);
  EXPECT_EQ(ReasonOf(over), RejectReason::kTooLarge) << over;
  EXPECT_EQ(agg.stats().rejected, 1);
  EXPECT_THAT(agg.Finish()[0].delta, ElementsAre(100, -100));
}

TEST(AggregatorTest, FiniteUpdatesNeverOverflowTheSum) {
  // Even with the bound opened wide, a fold that could carry the sum past
  // 1e37 is refused before it lands: the honest updates survive.
  AggregatorOptions options;
  options.max_update_scale = 1e30;
  Aggregator agg({{"a", 2}}, options);
  ASSERT_TRUE(agg.Add(0, Fp32({1, 2}), 100).ok());
  const absl::Status huge = agg.Add(0, Fp32({3e29f, 3e29f}), 100000000);
  EXPECT_EQ(ReasonOf(huge), RejectReason::kTooLarge) << huge;
  ASSERT_TRUE(agg.Add(0, Fp32({3, 4}), 100).ok());
  const std::vector<ShardResult> r = agg.Finish();
  EXPECT_THAT(r[0].delta, ElementsAre(2, 3));
}

TEST(AggregatorTest, CheckLeavesTheAggregateUntouched) {
  Aggregator agg({{"a", 2}}, AggregatorOptions());
  const WireTensor good = Fp32({1, 1});
  ASSERT_TRUE(agg.Check(0, good, 5).ok());
  EXPECT_FALSE(agg.Finish()[0].updated);  // checked, not folded
  Aggregator agg2({{"a", 2}}, AggregatorOptions());
  ASSERT_TRUE(agg2.Check(0, good, 5).ok());
  ASSERT_TRUE(agg2.AddChecked(0, good, 5).ok());
  EXPECT_THAT(agg2.Finish()[0].delta, ElementsAre(1, 1));
}

TEST(AggregatorTest, StatisticsShardsCarryTheSpreadOfTheirUpdates) {
  Aggregator agg({{"bn.running_mean", 2}, {"fc.weight", 2}, {"bn.running_sigma", 1}},
                 AggregatorOptions());
  // Weights 100 and 300 for the values 1 and 3: mean 2.5, variance 0.75.
  ASSERT_TRUE(agg.Add(0, Fp32({1, 4}), 100).ok());
  ASSERT_TRUE(agg.Add(0, Fp32({3, 4}), 300).ok());
  ASSERT_TRUE(agg.Add(1, Fp32({1, 4}), 100).ok());
  ASSERT_TRUE(agg.Add(1, Fp32({3, 4}), 300).ok());
  // A relay's partial counts as one update of its weight.
  ASSERT_TRUE(agg.AddPartialChecked(2, Fp32({2}), 200).ok());
  ASSERT_TRUE(agg.AddPartialChecked(2, Fp32({-2}), 200).ok());
  const std::vector<ShardResult> r = agg.Finish();
  EXPECT_THAT(r[0].delta, ElementsAre(2.5f, 4.0f));
  ASSERT_EQ(r[0].spread.size(), 2u);
  EXPECT_FLOAT_EQ(r[0].spread[0], 0.75f);  // 0.25 * 1.5^2 + 0.75 * 0.5^2
  EXPECT_FLOAT_EQ(r[0].spread[1], 0.0f);
  EXPECT_TRUE(r[1].spread.empty());  // trained parameters carry none
  EXPECT_THAT(r[2].delta, ElementsAre(0.0f));
  EXPECT_THAT(r[2].spread, ElementsAre(4.0f));
  // Statistics as large as the bound allows keep a finite spread.
  AggregatorOptions wide;
  wide.max_update_scale = 1e30;
  Aggregator huge({{"bn.running_sigma", 1}}, wide);
  ASSERT_TRUE(huge.Add(0, Fp32({3e29f}), 1).ok());
  ASSERT_TRUE(huge.Add(0, Fp32({-3e29f}), 1).ok());
  const std::vector<ShardResult> h = huge.Finish();
  ASSERT_EQ(h[0].spread.size(), 1u);
  EXPECT_TRUE(std::isfinite(h[0].spread[0]));
  EXPECT_GT(h[0].spread[0], 1e36f);
  // Robust rules keep none.
  AggregatorOptions median;
  median.rule = AggregationRule::kMedian;
  Aggregator robust({{"bn.running_mean", 1}}, median);
  ASSERT_TRUE(robust.Add(0, Fp32({1}), 100).ok());
  ASSERT_TRUE(robust.Add(0, Fp32({3}), 100).ok());
  EXPECT_TRUE(robust.Finish()[0].spread.empty());
}

}  // namespace
}  // namespace fedge
