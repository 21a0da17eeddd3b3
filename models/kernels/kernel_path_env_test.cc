#include "gtest/gtest.h"
#include "models/kernels/binary_conv.h"

namespace fedge {
namespace {

// BUILD sets FEDGE_KERNEL_PATH=portable for this test: the first kernel
// call of the process runs the portable path whatever the CPU has.
TEST(KernelPathEnvTest, TheEnvironmentPinsThePath) {
  EXPECT_EQ(ActiveKernelPath(), KernelPath::kPortable);
}

}  // namespace
}  // namespace fedge
