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

// c[m][j] (+)= sum over k < depth of a[m][k] * b[j][k]; depth % 64 == 0,
// b packed as PackedGemmOffset (binary_conv.h) says, |a * b| <= 255.
// Adds into c when `accumulate`, else overwrites it.
using GemmFn = void (*)(int64_t rows, int64_t cols, int64_t depth,
                        const int8_t* a, int64_t lda, const uint8_t* b,
                        int32_t* c, int64_t ldc, bool accumulate);

// Expands the sign bits of 4 consecutive GEMM depth entries (w[0..3], one
// 64-channel word each) into packed GEMM columns: for each 16-channel block
// cb < blocks, the 64 bytes at dst + cb * block_stride get byte
// j * 4 + r = bit 16 * cb + j of w[r].
using ExpandFn = void (*)(const uint64_t* w, int blocks, uint8_t* dst,
                          int64_t block_stride);

// AdamUpdate16 over [begin, end) (binary_conv.h), the bias-corrected
// factors precomputed: lr_c1 = lr / (1 - beta1^t), inv_c2 = 1 / (1 - beta2^t).
struct AdamFactors {
  float beta1, beta2, eps, lr_c1, inv_c2, sign_scale;
  bool clip;
};
using AdamFn = void (*)(uint16_t* w, uint16_t* m, uint16_t* v, const float* grad,
                        const uint8_t* sign_bits, int64_t begin, int64_t end,
                        const AdamFactors& f);

struct PathKernels {
  PopcountDotFn popcount_dot;
  GemmFn gemm;
  ExpandFn expand;
  AdamFn adam;
};

// The scalar Adam update every path shares for its tail.
void AdamScalar(uint16_t* w, uint16_t* m, uint16_t* v, const float* grad,
                const uint8_t* sign_bits, int64_t begin, int64_t end, const AdamFactors& f);

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
