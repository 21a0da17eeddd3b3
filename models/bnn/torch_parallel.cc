#include "models/bnn/torch_parallel.h"

#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>

namespace fedge {
namespace {

void* TorchScratch(size_t bytes) {
  return c10::GetCPUAllocator()->raw_allocate(bytes == 0 ? 1 : bytes);
}

void ReleaseTorchScratch(void* data) { c10::GetCPUAllocator()->raw_deallocate(data); }

}  // namespace

const ParallelFor& TorchParallel() {
  static const bool scratch = [] {
    SetScratchAllocator({&TorchScratch, &ReleaseTorchScratch});
    return true;
  }();
  (void)scratch;
  static const ParallelFor* parallel = new ParallelFor(
      [](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
        at::parallel_for(0, n, 1, fn);
      });
  return *parallel;
}

}  // namespace fedge
