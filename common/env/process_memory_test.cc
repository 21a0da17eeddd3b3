#include "common/env/process_memory.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(ProcessMemoryTest, PeakFollowsTouchedMemoryAndResets) {
  const int64_t before = CurrentRssBytes();
  ASSERT_GT(before, 0);
  {
    std::vector<char> block(64 << 20);
    std::memset(block.data(), 1, block.size());  // resident now
    EXPECT_GE(CurrentRssBytes(), before + (60 << 20));
  }
  EXPECT_GE(PeakRssBytes(), before + (60 << 20));
  ASSERT_TRUE(ResetPeakRss());
  // After the reset the peak is the current RSS, without the freed block.
  EXPECT_LT(PeakRssBytes(), before + (32 << 20));
}

}  // namespace
}  // namespace fedge
