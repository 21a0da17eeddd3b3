#ifndef FEDGE_MODELS_BNN_TORCH_PARALLEL_H_
#define FEDGE_MODELS_BNN_TORCH_PARALLEL_H_

// The ParallelFor the framework-free kernels (models/kernels) take, run on
// LibTorch's intra-op threads (at::set_num_threads).
//
// ATen's at::parallel_for is a header template whose `#pragma omp parallel`
// is silently ignored in code compiled without -fopenmp: it then runs on
// one thread. This is the one place that calls it, compiled with -fopenmp;
// everything else goes through here.
//
// The first call also routes the kernels' scratch memory (binary_kernels.h)
// through LibTorch's CPU allocator, so the counting allocator that measures
// a training step's memory sees it like any tensor.

#include "models/kernels/binary_kernels.h"

namespace fedge {

const ParallelFor& TorchParallel();

}  // namespace fedge

#endif  // FEDGE_MODELS_BNN_TORCH_PARALLEL_H_
