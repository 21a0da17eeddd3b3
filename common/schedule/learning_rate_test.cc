#include "common/schedule/learning_rate.h"

#include <gtest/gtest.h>

namespace fedge {
namespace {

TEST(LrFactorTest, ConstantIsOne) {
  for (int t = 0; t < 5; ++t) EXPECT_EQ(LrFactor(LrSchedule::kConstant, t, 5), 1.0);
}

TEST(LrFactorTest, CosineFallsFromOneTowardZero) {
  EXPECT_DOUBLE_EQ(LrFactor(LrSchedule::kCosine, 0, 4), 1.0);
  EXPECT_NEAR(LrFactor(LrSchedule::kCosine, 2, 4), 0.5, 1e-12);
  // 0.5 (1 + cos(3 pi / 4)) by hand.
  EXPECT_NEAR(LrFactor(LrSchedule::kCosine, 3, 4), 0.146446609, 1e-8);
  double last = 2;
  for (int t = 0; t < 30; ++t) {
    const double f = LrFactor(LrSchedule::kCosine, t, 30);
    EXPECT_LT(f, last);
    EXPECT_GT(f, 0);
    last = f;
  }
}

TEST(LrFactorTest, OutOfRangePositionsClamp) {
  EXPECT_EQ(LrFactor(LrSchedule::kCosine, -3, 10), 1.0);
  EXPECT_EQ(LrFactor(LrSchedule::kCosine, 12, 10), LrFactor(LrSchedule::kCosine, 9, 10));
  EXPECT_EQ(LrFactor(LrSchedule::kCosine, 0, 0), 1.0);
}

TEST(LrScheduleTest, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(*ParseLrSchedule("cosine"), LrSchedule::kCosine);
  EXPECT_EQ(*ParseLrSchedule("constant"), LrSchedule::kConstant);
  EXPECT_STREQ(LrScheduleName(LrSchedule::kCosine), "cosine");
  const absl::StatusOr<LrSchedule> bad = ParseLrSchedule("step");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("'step'"), std::string::npos);
}

}  // namespace
}  // namespace fedge
