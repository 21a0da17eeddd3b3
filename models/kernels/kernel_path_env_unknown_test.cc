#include "gtest/gtest.h"
#include "models/kernels/binary_conv.h"

namespace fedge {
namespace {

// BUILD sets FEDGE_KERNEL_PATH=sse9: not a path; it is reported and the
// best path this CPU runs is used.
TEST(KernelPathEnvTest, AnUnknownPathFallsBackToTheBest) {
  EXPECT_EQ(ActiveKernelPath(), SupportedKernelPaths().back());
}

}  // namespace
}  // namespace fedge
