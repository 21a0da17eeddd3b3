#ifndef FEDGE_MODELS_BINARY_KERNELS_H_
#define FEDGE_MODELS_BINARY_KERNELS_H_

// The arithmetic of l1 batch norm and the 2x2 max pool on raw NCHW float
// buffers, apart from LibTorch's autograd glue (binary_ops.cc), fused into
// as few passes over memory as the maths allows. Bit outputs use the layout
// of common/bit_pack.h over the flat element index. Parallel through the
// `parallel_for` the caller passes (LibTorch's, in the ops).
//
// Thread-compatible: calls on distinct buffers may run concurrently.

#include <cstdint>
#include <functional>

namespace fedge {

// Runs fn(begin, end) over [0, n) in pieces, possibly concurrently.
using ParallelFor =
    std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>&)>;

// Shape of an NCHW tensor (HW = 1 for [N, C]).
struct NchwShape {
  int64_t n = 0, c = 0, hw = 0;
  int64_t numel() const { return n * c * hw; }
};

// Forward l1 batch norm in training mode. Writes per-channel mean[c] and
// sigma[c] = mean|x - mean| + eps, y = (x - mean) / sigma + beta, and the
// packed bits of sign(xhat) (1 where x >= mean) into sign_bits, which must
// hold PackedBytes(numel, 1) bytes.
void L1NormForward(const float* x, const float* beta, NchwShape shape,
                   float eps, float* mean, float* sigma, float* y,
                   uint8_t* sign_bits, const ParallelFor& parallel);

// Backward of the design: with g = dy / sigma,
// dx = g - mean_c(g) - s * mean_c(g * s) * mean_abs[c], s = +-1 from
// sign_bits; dbeta[c] = sum of dy over channel c. With round_to_bfloat16,
// dx is rounded as RoundToBFloat16 does, in the same pass.
void L1NormBackward(const float* dy, const uint8_t* sign_bits,
                    const float* sigma, const float* mean_abs,
                    NchwShape shape, float* dx, float* dbeta,
                    const ParallelFor& parallel, bool round_to_bfloat16 = false);

// 2x2 max pool, stride 2, floor mode, over `planes` planes of height x
// width. Writes the maxima and each window's argmax position
// (row % 2) * 2 + (col % 2), first maximum wins, NaN propagates.
void MaxPool2x2Forward(const float* x, int64_t planes, int64_t height,
                       int64_t width, float* y, uint8_t* position,
                       const ParallelFor& parallel);

// Scatters dy back to the argmax positions; dx is fully written (zeros
// elsewhere).
void MaxPool2x2Backward(const float* dy, const uint8_t* position,
                        int64_t planes, int64_t height, int64_t width,
                        float* dx, const ParallelFor& parallel);

// Rounds each value to the nearest bfloat16 (ties to even), in place,
// keeping float32 storage: the numeric effect of 16-bit activation gradients.
// NaN and infinity pass through.
void RoundToBFloat16(float* x, int64_t n);

}  // namespace fedge

#endif  // FEDGE_MODELS_BINARY_KERNELS_H_
