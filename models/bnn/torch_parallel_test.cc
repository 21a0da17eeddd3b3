#include "models/bnn/torch_parallel.h"

#include <ATen/Parallel.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "models/memory/counting_allocator.h"

namespace fedge {
namespace {

// With two intra-op threads the range is split and runs on two threads:
// the test that would have caught at::parallel_for running serially.
TEST(TorchParallelTest, SplitsTheRangeAcrossTheIntraOpThreads) {
  at::set_num_threads(2);
  std::atomic<int64_t> covered{0};
  std::atomic<int> chunks{0};
  std::mutex mu;
  std::set<std::thread::id> threads;
  TorchParallel()(1000, [&](int64_t begin, int64_t end) {
    covered += end - begin;
    ++chunks;
    std::lock_guard<std::mutex> lock(mu);
    threads.insert(std::this_thread::get_id());
  });
  EXPECT_EQ(covered.load(), 1000);
  EXPECT_EQ(chunks.load(), 2);
  EXPECT_EQ(threads.size(), 2u);
}

TEST(TorchParallelTest, OneThreadRunsTheWholeRangeAtOnce) {
  at::set_num_threads(1);
  int calls = 0;
  TorchParallel()(10, [&](int64_t begin, int64_t end) {
    ++calls;
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 10);
  });
  EXPECT_EQ(calls, 1);
}

// Kernel scratch goes through LibTorch's allocator, so a step's measured
// peak includes it.
TEST(TorchParallelTest, KernelScratchIsCountedLikeTensors) {
  CountingCpuAllocator::Install();
  ASSERT_TRUE(CountingCpuAllocator::Installed());
  TorchParallel();
  const int64_t before = CountingCpuAllocator::LiveBytes();
  {
    Scratch<int32_t> scratch(1 << 18, 0);
    EXPECT_GE(CountingCpuAllocator::LiveBytes() - before, int64_t{1} << 20);
  }
  EXPECT_EQ(CountingCpuAllocator::LiveBytes(), before);
}

}  // namespace
}  // namespace fedge
