#ifndef FEDGE_MODELS_KERNELS_BINARY_CONV_H_
#define FEDGE_MODELS_KERNELS_BINARY_CONV_H_

// Bit-packed binary convolution and linear layers, forward and backward,
// on raw buffers (design 4.2), free of any framework:
//
// - Activations are packed by sign along channels: word (n, y, x, w) holds
//   bit c % 64 of channels 64w..64w+63 of pixel (y, x) of sample n, 1 where
//   the value is >= 0 (+1), 0 for -1. Bits past the channel count are 0.
// - Weights sign(W) are packed the same way in the order [tap][word][out],
//   tap = ky * k + kx, with 0 bits past the channel count.
// - Forward: y = K - 2 * popcount(a xor b), summed over the taps that fall
//   inside the image; padded taps are zero, not +-1, and add nothing.
// - Backward: dY is quantized to int8 per tensor (scale max|dY| / 127) and
//   dX = dY * sign(W)^T, dW = sign(x)^T * dY run as integer GEMMs of int8
//   against bits expanded to {0, 1} on the fly: with s = 2b - 1,
//   sum q * s = 2 * sum q * b - sum q, exact in integers.
//
// A linear layer is a convolution with height = width = kernel = 1.
//
// Every entry point dispatches at run time to the fastest path the CPU has
// (AVX-512 VNNI + VPOPCNTDQ, AVX2 + POPCNT, or portable C++); tests can pin
// a path with SetKernelPath to run each one on the same inputs.
//
// Thread-compatible: calls on distinct output buffers may run concurrently.

#include <cstdint>
#include <vector>

#include "models/kernels/binary_kernels.h"

namespace fedge {

enum class KernelPath { kPortable, kAvx2, kAvx512 };

const char* KernelPathName(KernelPath path);
// The paths this CPU can run, portable first.
std::vector<KernelPath> SupportedKernelPaths();
// The path in use (the best supported unless pinned).
KernelPath ActiveKernelPath();
// Pins the path for every later call (process-wide); returns false and
// changes nothing if the CPU cannot run it.
bool SetKernelPath(KernelPath path);

// Geometry of one layer: input [n, c, h, w], square kernel, `out` channels.
struct BinaryConvShape {
  int64_t n = 0, c = 0, h = 1, w = 1;
  int64_t out = 0;
  int64_t kernel = 1, pad = 0, stride = 1;

  int64_t out_h() const { return (h + 2 * pad - kernel) / stride + 1; }
  int64_t out_w() const { return (w + 2 * pad - kernel) / stride + 1; }
  int64_t words() const { return (c + 63) / 64; }
  int64_t taps() const { return kernel * kernel; }
  // Packed sizes, in 64-bit words.
  int64_t input_words() const { return n * h * w * words(); }
  // The straight-through mask keeps each sample's c x h x w bits in NCHW
  // order (the order dX is written in), from a 64-bit word boundary.
  int64_t mask_words_per_sample() const { return (c * h * w + 63) / 64; }
  int64_t mask_words() const { return n * mask_words_per_sample(); }
  int64_t weight_words() const { return taps() * words() * out; }
  bool linear() const { return h == 1 && w == 1 && kernel == 1; }
};

// Packs sign(x) of an NCHW float input (bit 1 where x >= 0) in the
// activation layout (shape.input_words() words) and, when `mask` is not
// null, the straight-through mask |x| <= mask_limit in the mask layout
// (shape.mask_words() words).
void PackActivationSigns(const float* x, const BinaryConvShape& shape,
                         float mask_limit, uint64_t* signs, uint64_t* mask,
                         const ParallelFor& parallel);

// Packs sign(w) of float weights [out, c, k, k] (bit 1 where w >= 0) in the
// weight layout (shape.weight_words() words).
void PackWeightSigns(const float* w, const BinaryConvShape& shape,
                     uint64_t* packed, const ParallelFor& parallel);

// y[n, out, oy, ox] (NCHW float, exact small integers) from packed input
// and weights.
void BinaryConvForward(const uint64_t* x_signs, const uint64_t* w_signs,
                       const BinaryConvShape& shape, float* y,
                       const ParallelFor& parallel);

// BinaryConvForward followed by a 2x2, stride 2, floor-mode max pool, fused:
// the full-size output exists only two rows at a time. y: [n, out, oh/2,
// ow/2]; position: one byte per pooled value, the window's argmax
// (row % 2) * 2 + (col % 2), first maximum wins (as MaxPool2x2Forward).
void BinaryConvPoolForward(const uint64_t* x_signs, const uint64_t* w_signs,
                           const BinaryConvShape& shape, float* y, uint8_t* position,
                           const ParallelFor& parallel);

// The pool's backward on int8 codes: q (the convolution's output size,
// [n, out, oh, ow]) gets each pooled code at its window's argmax and 0
// elsewhere.
void ScatterPooledCodes(const int8_t* pooled, const uint8_t* position,
                        const BinaryConvShape& shape, int8_t* q,
                        const ParallelFor& parallel);

// Quantizes dy to int8 codes round(dy / scale), scale = max|dy| / 127,
// and returns the scale (0 when dy is all zero; then every code is 0).
// Fails only on non-finite input, returning a negative scale.
float QuantizeInt8(const float* dy, int64_t count, int8_t* q,
                   const ParallelFor& parallel);

// dx[n, c, y, x] = scale * sum over out, taps of q * sign(w), zeroed where
// the packed straight-through mask (mask layout; null: keep all) has
// a 0 bit. q: [n, out, oh, ow] int8 codes of dY. With round_to_bfloat16
// each value is rounded to bfloat16 as it is written (the 16-bit
// activation-gradient buffers of design 4.2).
void BinaryConvBackwardInput(const int8_t* q, float scale,
                             const uint64_t* w_signs, const uint64_t* mask,
                             const BinaryConvShape& shape, float* dx,
                             const ParallelFor& parallel,
                             bool round_to_bfloat16 = false);

// dw[out, c, ky, kx] = scale * sum over samples and output pixels of
// q * sign(x), with padded taps contributing nothing.
void BinaryConvBackwardWeight(const int8_t* q, float scale,
                              const uint64_t* x_signs,
                              const BinaryConvShape& shape, float* dw,
                              const ParallelFor& parallel);

// The 1-bit weight gradient of design 4.2 from a float dW: sign bits in the
// layout of common/bit_pack.h (1 where dw >= 0) and mean |dw|.
float PackSignsAndMeanAbs(const float* dw, int64_t count, uint8_t* bits);

// One Adam step over n latent weights kept in 16 bits (design 4.2):
// weights IEEE float16, moments m and v bfloat16, all as raw 16-bit words,
// updated in one pass in float32 (each value rounded to nearest even on the
// way back). The gradient is grad[i] or, with grad null, the 1-bit form
// sign_bits (common/bit_pack.h layout, 1 = +) times sign_scale. With clip
// the weights are clamped to [-1, 1].
struct AdamStep {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
  int64_t step = 1;  // 1-based, for the bias corrections
  bool clip = true;
};
void AdamUpdate16(uint16_t* w_half, uint16_t* m_bf16, uint16_t* v_bf16, const float* grad,
                  const uint8_t* sign_bits, float sign_scale, int64_t n,
                  const AdamStep& step, const ParallelFor& parallel);

// Integer GEMM building block, exposed for tests and benchmarks:
// c[m][j] += sum over k < depth of a[m][k] * b[j][k], with a int8 (rows
// lda bytes apart) and b uint8 holding 0 or 1, packed (below); rows of c
// are ldc ints apart. depth must be a multiple of 64.
//
// Packed b: blocks of 16 columns; within a block, groups of 4 depth
// entries; within a group, 16 columns x 4 bytes, the order a VNNI dot
// product (and vpmaddubsw) consumes, so the kernels accumulate 16 columns
// per register without horizontal sums. Columns past `cols` are zero.
inline int64_t PackedGemmBytes(int64_t cols, int64_t depth) {
  return (cols + 15) / 16 * 16 * depth;
}
inline int64_t PackedGemmOffset(int64_t j, int64_t k, int64_t depth) {
  return (j / 16) * 16 * depth + (k / 4) * 64 + (j % 16) * 4 + k % 4;
}
void GemmS8U1(int64_t rows, int64_t cols, int64_t depth, const int8_t* a,
              int64_t lda, const uint8_t* b_packed, int32_t* c, int64_t ldc);

}  // namespace fedge

#endif  // FEDGE_MODELS_KERNELS_BINARY_CONV_H_
