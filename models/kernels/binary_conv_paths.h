#ifndef FEDGE_MODELS_KERNELS_BINARY_CONV_PATHS_H_
#define FEDGE_MODELS_KERNELS_BINARY_CONV_PATHS_H_

// The two inner kernels each instruction-set path provides (see
// binary_conv.h for the layouts). Internal to models/kernels.

#include <cstdint>

namespace fedge {
namespace kernels {

// acc[o] += sum over t < taps, w < words of
//   popcount(x[t][w] ^ weights[(tap[t] * words + w) * out + o]),
// for o < out; x[t] points at the packed words of one pixel.
using PopcountDotFn = void (*)(const uint64_t* const* x, const int* tap,
                               int taps, int64_t words, const uint64_t* weights,
                               int64_t out, int32_t* acc);

// c[m][j] += sum over k < depth of a[m][k] * b[j][k]; depth % 64 == 0,
// b in {0, 1}.
using GemmFn = void (*)(int64_t rows, int64_t cols, int64_t depth,
                        const int8_t* a, int64_t lda, const uint8_t* b,
                        int64_t ldb, int32_t* c, int64_t ldc);

struct PathKernels {
  PopcountDotFn popcount_dot;
  GemmFn gemm;
};

PathKernels PortableKernels();
#if defined(__x86_64__)
bool CpuHasAvx2();
bool CpuHasAvx512();
PathKernels Avx2Kernels();
PathKernels Avx512Kernels();
#endif

}  // namespace kernels
}  // namespace fedge

#endif  // FEDGE_MODELS_KERNELS_BINARY_CONV_PATHS_H_
