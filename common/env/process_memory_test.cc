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
  // After the reset the peak restarts from the current RSS (which, under
  // ASan's quarantine, may still hold the freed block).
  EXPECT_LE(PeakRssBytes(), CurrentRssBytes() + (4 << 20));
}

}  // namespace
}  // namespace fedge
