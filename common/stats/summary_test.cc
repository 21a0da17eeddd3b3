#include "common/stats/summary.h"

#include <cmath>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(SummaryTest, MeanAndSampleStandardDeviation) {
  const MeanSd s = Summarize({2, 4, 4, 4, 5, 5, 7, 9});
  EXPECT_DOUBLE_EQ(s.mean, 5.0);
  EXPECT_NEAR(s.sd, std::sqrt(32.0 / 7), 1e-12);
  EXPECT_EQ(Summarize({3}).sd, 0.0);
  EXPECT_EQ(Summarize({}).mean, 0.0);
}

}  // namespace
}  // namespace fedge
