#include "models/bnn/torch_parallel.h"

#include <ATen/Parallel.h>

namespace fedge {

const ParallelFor& TorchParallel() {
  static const ParallelFor* parallel = new ParallelFor(
      [](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
        at::parallel_for(0, n, 1, fn);
      });
  return *parallel;
}

}  // namespace fedge
