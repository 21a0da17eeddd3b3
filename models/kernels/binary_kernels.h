#ifndef FEDGE_MODELS_BINARY_KERNELS_H_
#define FEDGE_MODELS_BINARY_KERNELS_H_

// The arithmetic of l1 batch norm and the 2x2 max pool on raw NCHW float
// buffers, apart from LibTorch's autograd glue (binary_ops.cc), fused into
// as few passes over memory as the maths allows. Bit outputs use the layout
// of common/bit_pack.h over the flat element index. Parallel through the
// `parallel_for` the caller passes (LibTorch's, in the ops).
//
// Thread-compatible: calls on distinct buffers may run concurrently.

#include <cstddef>
#include <cstdint>
#include <functional>

namespace fedge {

// Where the kernels' scratch memory comes from: operator new by default.
// The LibTorch glue routes it through LibTorch's CPU allocator, so the
// memory accounting of a training step (the counting allocator) sees the
// kernels' transients too. Set once, before kernels run.
struct ScratchAllocator {
  void* (*allocate)(size_t bytes) = nullptr;
  void (*release)(void* data) = nullptr;
};
void SetScratchAllocator(ScratchAllocator allocator);

void* AllocateScratch(size_t bytes);
void ReleaseScratch(void* data);

// A fixed-size scratch array of T from the scratch allocator.
template <typename T>
class Scratch {
 public:
  explicit Scratch(size_t size)
      : size_(size), data_(static_cast<T*>(AllocateScratch(size * sizeof(T)))) {}
  Scratch(size_t size, T fill) : Scratch(size) { Fill(fill); }
  ~Scratch() { ReleaseScratch(data_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  void Fill(T value) {
    for (size_t i = 0; i < size_; ++i) data_[i] = value;
  }

 private:
  size_t size_;
  T* data_;
};

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

// The window position of the first maximum of a 2x2 window (top-left,
// top-right, bottom-left, bottom-right), without a branch; NaN is not
// looked for.
inline int WindowArgmax(const float v[4]) {
  int best = 0;
  float m = v[0];
  for (int k = 1; k < 4; ++k) {
    const bool greater = v[k] > m;
    m = greater ? v[k] : m;
    best = greater ? k : best;
  }
  return best;
}

// The pool's backward for any element type: out (planes of height x width)
// gets each window's value at its argmax position, zeros elsewhere.
template <typename T>
void ScatterToArgmax(const T* pooled, const uint8_t* position, int64_t planes,
                     int64_t height, int64_t width, T* out, const ParallelFor& parallel) {
  const int64_t oh = height / 2, ow = width / 2;
  parallel(planes, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      T* plane = out + p * height * width;
      for (int64_t i = 0; i < height * width; ++i) plane[i] = T(0);
      const T* g = pooled + p * oh * ow;
      const uint8_t* pos = position + p * oh * ow;
      for (int64_t r = 0; r < oh; ++r) {
        for (int64_t c = 0; c < ow; ++c) {
          const int k = pos[r * ow + c];
          plane[(2 * r + k / 2) * width + 2 * c + k % 2] = g[r * ow + c];
        }
      }
    }
  });
}

// One value rounded to the nearest bfloat16 (ties to even), kept in float32;
// NaN and infinity pass through.
inline float RoundedToBFloat16(float v) {
  uint32_t u;
  __builtin_memcpy(&u, &v, sizeof(u));
  const bool finite = (u & 0x7F800000u) != 0x7F800000u;
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  u = finite ? rounded : u;
  __builtin_memcpy(&v, &u, sizeof(u));
  return v;
}

// Rounds each value to the nearest bfloat16 (ties to even), in place,
// keeping float32 storage: the numeric effect of 16-bit activation gradients.
// NaN and infinity pass through.
void RoundToBFloat16(float* x, int64_t n);

}  // namespace fedge

#endif  // FEDGE_MODELS_BINARY_KERNELS_H_
