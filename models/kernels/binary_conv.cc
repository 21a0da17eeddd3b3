#include "models/kernels/binary_conv.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "models/kernels/binary_conv_paths.h"

namespace fedge {
namespace {

// ------------------------------------------------------- portable path ---

inline int Popcount64(uint64_t v) {
#if defined(__x86_64__)
  // Baseline x86-64 has no POPCNT instruction: the SWAR sum beats the
  // library call the builtin would become.
  v = v - ((v >> 1) & 0x5555555555555555ULL);
  v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
  v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
  return static_cast<int>((v * 0x0101010101010101ULL) >> 56);
#else
  return __builtin_popcountll(v);
#endif
}

void PopcountDotPortable(const uint64_t* const* x, const int* tap, int taps,
                         int64_t words, const uint64_t* weights, int64_t out,
                         int32_t* acc) {
  for (int t = 0; t < taps; ++t) {
    for (int64_t w = 0; w < words; ++w) {
      const uint64_t xw = x[t][w];
      const uint64_t* wp = weights + (tap[t] * words + w) * out;
      for (int64_t o = 0; o < out; ++o) acc[o] += Popcount64(xw ^ wp[o]);
    }
  }
}

void GemmPortable(int64_t rows, int64_t cols, int64_t depth, const int8_t* a,
                  int64_t lda, const uint8_t* b, int64_t ldb, int32_t* c,
                  int64_t ldc) {
  for (int64_t m = 0; m < rows; ++m) {
    const int8_t* ar = a + m * lda;
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      const uint8_t* b0 = b + j * ldb;
      const uint8_t* b1 = b0 + ldb;
      const uint8_t* b2 = b1 + ldb;
      const uint8_t* b3 = b2 + ldb;
      int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t k = 0; k < depth; ++k) {
        const int32_t v = ar[k];
        s0 += v * b0[k];
        s1 += v * b1[k];
        s2 += v * b2[k];
        s3 += v * b3[k];
      }
      int32_t* cr = c + m * ldc + j;
      cr[0] += s0;
      cr[1] += s1;
      cr[2] += s2;
      cr[3] += s3;
    }
    for (; j < cols; ++j) {
      const uint8_t* br = b + j * ldb;
      int32_t s = 0;
      for (int64_t k = 0; k < depth; ++k) s += ar[k] * br[k];
      c[m * ldc + j] += s;
    }
  }
}

// ------------------------------------------------------------ dispatch ---

bool Supported(KernelPath path) {
  switch (path) {
    case KernelPath::kPortable:
      return true;
#if defined(__x86_64__)
    case KernelPath::kAvx2:
      return kernels::CpuHasAvx2();
    case KernelPath::kAvx512:
      return kernels::CpuHasAvx512();
#else
    default:
      return false;
#endif
  }
  return false;
}

KernelPath BestPath() {
  if (Supported(KernelPath::kAvx512)) return KernelPath::kAvx512;
  if (Supported(KernelPath::kAvx2)) return KernelPath::kAvx2;
  return KernelPath::kPortable;
}

std::atomic<int>& PathSlot() {
  static std::atomic<int> slot{static_cast<int>(BestPath())};
  return slot;
}

kernels::PathKernels Kernels() {
  switch (static_cast<KernelPath>(PathSlot().load(std::memory_order_relaxed))) {
#if defined(__x86_64__)
    case KernelPath::kAvx512:
      return kernels::Avx512Kernels();
    case KernelPath::kAvx2:
      return kernels::Avx2Kernels();
#endif
    default:
      return kernels::PortableKernels();
  }
}

int64_t RoundUp64(int64_t v) { return (v + 63) / 64 * 64; }

using kernels::GemmFn;

inline uint8_t BitAt(const uint64_t* words, int64_t c) {
  return static_cast<uint8_t>((words[c >> 6] >> (c & 63)) & 1);
}

// sign(W) of a linear layer as bytes {0, 1}: row c holds out_pad entries.
std::vector<uint8_t> LinearWeightBytes(const uint64_t* w_signs,
                                       const BinaryConvShape& s,
                                       int64_t out_pad) {
  std::vector<uint8_t> wb(s.c * out_pad, 0);
  for (int64_t ch = 0; ch < s.c; ++ch) {
    const uint64_t* src = w_signs + (ch / 64) * s.out;
    for (int64_t o = 0; o < s.out; ++o) wb[ch * out_pad + o] = (src[o] >> (ch % 64)) & 1;
  }
  return wb;
}

// A linear layer's backward runs over the whole batch at once: dX is one
// [batch, out] x [out, c] GEMM split by rows of the batch.
void LinearBackwardInput(const int8_t* q, float scale, const uint64_t* w_signs,
                         const uint64_t* mask, const BinaryConvShape& s,
                         float* dx, const ParallelFor& parallel) {
  const GemmFn gemm = Kernels().gemm;
  const int64_t out_pad = RoundUp64(s.out), words = s.words();
  const std::vector<uint8_t> wb = LinearWeightBytes(w_signs, s, out_pad);
  constexpr int64_t kRows = 16;
  parallel((s.n + kRows - 1) / kRows, [&](int64_t b0, int64_t b1) {
    std::vector<int8_t> a(kRows * out_pad, 0);
    std::vector<int32_t> g(kRows * s.c);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * kRows, rows = std::min(kRows, s.n - n0);
      for (int64_t i = 0; i < rows; ++i) {
        std::memcpy(a.data() + i * out_pad, q + (n0 + i) * s.out, s.out);
      }
      std::fill(g.begin(), g.end(), 0);
      gemm(rows, s.c, out_pad, a.data(), out_pad, wb.data(), out_pad, g.data(), s.c);
      for (int64_t i = 0; i < rows; ++i) {
        int32_t sum = 0;
        for (int64_t o = 0; o < s.out; ++o) sum += a[i * out_pad + o];
        const uint64_t* mw = mask == nullptr ? nullptr : mask + (n0 + i) * words;
        for (int64_t ch = 0; ch < s.c; ++ch) {
          const float keep = mw == nullptr ? 1.0f : static_cast<float>(BitAt(mw, ch));
          dx[(n0 + i) * s.c + ch] =
              scale * static_cast<float>(2 * g[i * s.c + ch] - sum) * keep;
        }
      }
    }
  });
}

// dW of a linear layer: [out, batch] x [batch, c], split by output rows.
void LinearBackwardWeight(const int8_t* q, float scale, const uint64_t* x_signs,
                          const BinaryConvShape& s, float* dw,
                          const ParallelFor& parallel) {
  const GemmFn gemm = Kernels().gemm;
  const int64_t depth = RoundUp64(s.n), words = s.words();
  std::vector<int8_t> a(s.out * depth, 0);
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t o = 0; o < s.out; ++o) a[o * depth + n] = q[n * s.out + o];
  }
  std::vector<uint8_t> xb(s.c * depth, 0);
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t ch = 0; ch < s.c; ++ch) xb[ch * depth + n] = BitAt(x_signs + n * words, ch);
  }
  constexpr int64_t kRows = 16;
  parallel((s.out + kRows - 1) / kRows, [&](int64_t b0, int64_t b1) {
    std::vector<int32_t> g(kRows * s.c);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o0 = b * kRows, rows = std::min(kRows, s.out - o0);
      std::fill(g.begin(), g.end(), 0);
      gemm(rows, s.c, depth, a.data() + o0 * depth, depth, xb.data(), depth,
           g.data(), s.c);
      for (int64_t i = 0; i < rows; ++i) {
        int64_t sum = 0;
        for (int64_t n = 0; n < s.n; ++n) sum += a[(o0 + i) * depth + n];
        for (int64_t ch = 0; ch < s.c; ++ch) {
          dw[(o0 + i) * s.c + ch] =
              scale * static_cast<float>(2 * int64_t{g[i * s.c + ch]} - sum);
        }
      }
    }
  });
}

}  // namespace

namespace kernels {
PathKernels PortableKernels() { return {&PopcountDotPortable, &GemmPortable}; }
}  // namespace kernels

const char* KernelPathName(KernelPath path) {
  switch (path) {
    case KernelPath::kPortable:
      return "portable";
    case KernelPath::kAvx2:
      return "avx2";
    case KernelPath::kAvx512:
      return "avx512-vnni";
  }
  return "?";
}

std::vector<KernelPath> SupportedKernelPaths() {
  std::vector<KernelPath> paths;
  for (KernelPath p : {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (Supported(p)) paths.push_back(p);
  }
  return paths;
}

KernelPath ActiveKernelPath() {
  return static_cast<KernelPath>(PathSlot().load(std::memory_order_relaxed));
}

bool SetKernelPath(KernelPath path) {
  if (!Supported(path)) return false;
  PathSlot().store(static_cast<int>(path), std::memory_order_relaxed);
  return true;
}

void GemmS8U1(int64_t rows, int64_t cols, int64_t depth, const int8_t* a,
              int64_t lda, const uint8_t* b, int64_t ldb, int32_t* c,
              int64_t ldc) {
  Kernels().gemm(rows, cols, depth, a, lda, b, ldb, c, ldc);
}

void PackActivationSigns(const float* x, const BinaryConvShape& shape,
                         float mask_limit, uint64_t* signs, uint64_t* mask,
                         const ParallelFor& parallel) {
  const int64_t pixels = shape.h * shape.w, words = shape.words();
  parallel(shape.n, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* xn = x + n * shape.c * pixels;
      for (int64_t w = 0; w < words; ++w) {
        const int64_t c0 = 64 * w, c1 = std::min(shape.c, c0 + 64);
        for (int64_t p = 0; p < pixels; ++p) {
          uint64_t s = 0, m = 0;
          for (int64_t c = c0; c < c1; ++c) {
            const float v = xn[c * pixels + p];
            s |= static_cast<uint64_t>(v >= 0) << (c - c0);
            m |= static_cast<uint64_t>(std::fabs(v) <= mask_limit) << (c - c0);
          }
          const int64_t at = (n * pixels + p) * words + w;
          signs[at] = s;
          if (mask != nullptr) mask[at] = m;
        }
      }
    }
  });
}

void PackWeightSigns(const float* w, const BinaryConvShape& shape,
                     uint64_t* packed) {
  const int64_t taps = shape.taps(), words = shape.words();
  std::fill(packed, packed + shape.weight_words(), 0);
  for (int64_t o = 0; o < shape.out; ++o) {
    for (int64_t c = 0; c < shape.c; ++c) {
      for (int64_t t = 0; t < taps; ++t) {
        const uint64_t bit = w[(o * shape.c + c) * taps + t] >= 0;
        packed[(t * words + c / 64) * shape.out + o] |= bit << (c % 64);
      }
    }
  }
}

void BinaryConvForward(const uint64_t* x_signs, const uint64_t* w_signs,
                       const BinaryConvShape& shape, float* y,
                       const ParallelFor& parallel) {
  const kernels::PathKernels k = Kernels();
  const int64_t oh = shape.out_h(), ow = shape.out_w(), words = shape.words();
  const int64_t out = shape.out;
  parallel(shape.n * oh, [&](int64_t r0, int64_t r1) {
    std::vector<int32_t> acc(out);
    std::vector<float> row(out * ow);
    std::vector<const uint64_t*> taps_x(shape.taps());
    std::vector<int> taps(shape.taps());
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / oh, oy = r % oh;
      for (int64_t ox = 0; ox < ow; ++ox) {
        int count = 0;
        for (int64_t ky = 0; ky < shape.kernel; ++ky) {
          const int64_t iy = oy * shape.stride - shape.pad + ky;
          if (iy < 0 || iy >= shape.h) continue;
          for (int64_t kx = 0; kx < shape.kernel; ++kx) {
            const int64_t ix = ox * shape.stride - shape.pad + kx;
            if (ix < 0 || ix >= shape.w) continue;
            taps_x[count] = x_signs + ((n * shape.h + iy) * shape.w + ix) * words;
            taps[count] = static_cast<int>(ky * shape.kernel + kx);
            ++count;
          }
        }
        std::fill(acc.begin(), acc.end(), 0);
        k.popcount_dot(taps_x.data(), taps.data(), count, words, w_signs, out,
                       acc.data());
        const int32_t terms = static_cast<int32_t>(count * shape.c);
        for (int64_t o = 0; o < out; ++o) {
          row[o * ow + ox] = static_cast<float>(terms - 2 * acc[o]);
        }
      }
      for (int64_t o = 0; o < out; ++o) {
        std::memcpy(y + ((n * out + o) * oh + oy) * ow, row.data() + o * ow,
                    sizeof(float) * ow);
      }
    }
  });
}

float QuantizeInt8(const float* dy, int64_t count, int8_t* q,
                   const ParallelFor& parallel) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  std::vector<float> chunk_max(std::max<int64_t>(chunks, 1), 0.0f);
  parallel(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      float m = 0;
      bool finite = true;
      for (int64_t i = c * kChunk; i < std::min(count, (c + 1) * kChunk); ++i) {
        m = std::max(m, std::fabs(dy[i]));
        finite &= std::isfinite(dy[i]);
      }
      chunk_max[c] = finite ? m : -1.0f;
    }
  });
  float max_abs = 0;
  for (float m : chunk_max) {
    if (m < 0) return -1.0f;
    max_abs = std::max(max_abs, m);
  }
  if (max_abs == 0) {
    std::memset(q, 0, count);
    return 0.0f;
  }
  const float scale = max_abs / 127.0f, inv = 127.0f / max_abs;
  parallel(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t i = c0 * kChunk; i < std::min(count, c1 * kChunk); ++i) {
      const float v = std::nearbyint(dy[i] * inv);
      q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
    }
  });
  return scale;
}

void BinaryConvBackwardInput(const int8_t* q, float scale,
                             const uint64_t* w_signs, const uint64_t* mask,
                             const BinaryConvShape& layer, float* dx,
                             const ParallelFor& parallel) {
  if (layer.linear()) {
    LinearBackwardInput(q, scale, w_signs, mask, layer, dx, parallel);
    return;
  }
  const kernels::PathKernels k = Kernels();
  const BinaryConvShape& s = layer;
  const int64_t taps = s.taps(), words = s.words(), c = s.c;
  const int64_t out_pad = RoundUp64(s.out);
  const int64_t oh = s.out_h(), ow = s.out_w(), pixels = oh * ow;
  const int64_t in_pixels = s.h * s.w;
  // sign(W) as bytes {0, 1}, one row of out_pad per (tap, channel).
  std::vector<uint8_t> wb(taps * c * out_pad, 0);
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t ch = 0; ch < c; ++ch) {
      const uint64_t* src = w_signs + (t * words + ch / 64) * s.out;
      uint8_t* dst = wb.data() + (t * c + ch) * out_pad;
      for (int64_t o = 0; o < s.out; ++o) dst[o] = (src[o] >> (ch % 64)) & 1;
    }
  }
  // Rows of output pixels per GEMM block: keeps the int32 block in L2.
  const int64_t block = std::max<int64_t>(
      1, std::min<int64_t>(pixels, (256 << 10) / (4 * taps * c)));
  parallel(s.n, [&](int64_t n0, int64_t n1) {
    std::vector<int8_t> qt(block * out_pad, 0);
    std::vector<int32_t> row_sum(block);
    std::vector<int32_t> g(block * taps * c);
    std::vector<int32_t> acc(in_pixels * c);
    for (int64_t n = n0; n < n1; ++n) {
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t p0 = 0; p0 < pixels; p0 += block) {
        const int64_t rows = std::min(block, pixels - p0);
        for (int64_t i = 0; i < rows; ++i) {
          int8_t* dst = qt.data() + i * out_pad;
          const int8_t* src = q + n * s.out * pixels + p0 + i;
          int32_t sum = 0;
          for (int64_t o = 0; o < s.out; ++o) {
            dst[o] = src[o * pixels];
            sum += dst[o];
          }
          row_sum[i] = sum;
        }
        std::fill(g.begin(), g.begin() + rows * taps * c, 0);
        k.gemm(rows, taps * c, out_pad, qt.data(), out_pad, wb.data(), out_pad,
               g.data(), taps * c);
        // col2im: sum q * (2b - 1) = 2 g - sum q, into the input pixels.
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t p = p0 + i, oy = p / ow, ox = p % ow;
          for (int64_t ky = 0; ky < s.kernel; ++ky) {
            const int64_t iy = oy * s.stride - s.pad + ky;
            if (iy < 0 || iy >= s.h) continue;
            for (int64_t kx = 0; kx < s.kernel; ++kx) {
              const int64_t ix = ox * s.stride - s.pad + kx;
              if (ix < 0 || ix >= s.w) continue;
              const int32_t* gr = g.data() + (i * taps + ky * s.kernel + kx) * c;
              int32_t* ar = acc.data() + (iy * s.w + ix) * c;
              const int32_t sum = row_sum[i];
              for (int64_t ch = 0; ch < c; ++ch) ar[ch] += 2 * gr[ch] - sum;
            }
          }
        }
      }
      // Scale, mask, and write NCHW.
      for (int64_t i = 0; i < in_pixels; ++i) {
        const int32_t* ar = acc.data() + i * c;
        const uint64_t* mw =
            mask == nullptr ? nullptr : mask + (n * in_pixels + i) * words;
        for (int64_t ch = 0; ch < c; ++ch) {
          const float keep = mw == nullptr ? 1.0f : static_cast<float>(BitAt(mw, ch));
          dx[(n * c + ch) * in_pixels + i] = scale * static_cast<float>(ar[ch]) * keep;
        }
      }
    }
  });
}

void BinaryConvBackwardWeight(const int8_t* q, float scale,
                              const uint64_t* x_signs,
                              const BinaryConvShape& layer, float* dw,
                              const ParallelFor& parallel) {
  if (layer.linear()) {
    LinearBackwardWeight(q, scale, x_signs, layer, dw, parallel);
    return;
  }
  const kernels::PathKernels k = Kernels();
  const BinaryConvShape& s = layer;
  const int64_t taps = s.taps(), words = s.words(), c = s.c, out = s.out;
  const int64_t oh = s.out_h(), ow = s.out_w(), pixels = oh * ow;
  const int64_t depth = RoundUp64(pixels);
  const int64_t cols = taps * c;
  // valid[t][p] = 1 where tap t of output pixel p lands inside the image.
  std::vector<uint8_t> valid(taps * depth, 0);
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t oy = p / ow, ox = p % ow;
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t iy = oy * s.stride - s.pad + t / s.kernel;
      const int64_t ix = ox * s.stride - s.pad + t % s.kernel;
      valid[t * depth + p] = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
    }
  }
  // int32 sums stay exact while samples * pixels * 127 < 2^31; longer runs
  // flush into int64.
  const int64_t flush_every = std::max<int64_t>(1, (int64_t{1} << 30) / (pixels * 127));
  std::vector<int64_t> total(out * cols, 0), total_valid(out * taps, 0);
  std::mutex merge;
  parallel(s.n, [&](int64_t n0, int64_t n1) {
    std::vector<int8_t> a(out * depth, 0);
    std::vector<uint8_t> xb(cols * depth, 0);
    std::vector<int32_t> acc(out * cols, 0), acc_valid(out * taps, 0);
    std::vector<int64_t> local(out * cols, 0), local_valid(out * taps, 0);
    auto flush = [&] {
      for (size_t i = 0; i < acc.size(); ++i) local[i] += acc[i];
      for (size_t i = 0; i < acc_valid.size(); ++i) local_valid[i] += acc_valid[i];
      std::fill(acc.begin(), acc.end(), 0);
      std::fill(acc_valid.begin(), acc_valid.end(), 0);
    };
    int64_t pending = 0;
    for (int64_t n = n0; n < n1; ++n) {
      for (int64_t o = 0; o < out; ++o) {
        std::memcpy(a.data() + o * depth, q + (n * out + o) * pixels, pixels);
      }
      // im2col of the packed signs, expanded to bytes.
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t ky = t / s.kernel, kx = t % s.kernel;
        for (int64_t p = 0; p < pixels; ++p) {
          const int64_t oy = p / ow, ox = p % ow;
          const int64_t iy = oy * s.stride - s.pad + ky;
          const int64_t ix = ox * s.stride - s.pad + kx;
          uint8_t* col = xb.data() + t * c * depth + p;
          if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) {
            for (int64_t ch = 0; ch < c; ++ch) col[ch * depth] = 0;
            continue;
          }
          const uint64_t* xw = x_signs + ((n * s.h + iy) * s.w + ix) * words;
          for (int64_t ch = 0; ch < c; ++ch) col[ch * depth] = BitAt(xw, ch);
        }
      }
      k.gemm(out, cols, depth, a.data(), depth, xb.data(), depth, acc.data(), cols);
      k.gemm(out, taps, depth, a.data(), depth, valid.data(), depth,
             acc_valid.data(), taps);
      if (++pending == flush_every) {
        flush();
        pending = 0;
      }
    }
    flush();
    std::lock_guard<std::mutex> lock(merge);
    for (size_t i = 0; i < local.size(); ++i) total[i] += local[i];
    for (size_t i = 0; i < local_valid.size(); ++i) total_valid[i] += local_valid[i];
  });
  // sum q * s over valid taps = 2 * sum q * b - sum of q where valid.
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t value = 2 * total[o * cols + t * c + ch] - total_valid[o * taps + t];
        dw[(o * c + ch) * taps + t] = scale * static_cast<float>(value);
      }
    }
  }
}

float PackSignsAndMeanAbs(const float* dw, int64_t count, uint8_t* bits) {
  double sum = 0;
  for (int64_t i = 0; i < count; i += 8) {
    unsigned byte = 0;
    for (int64_t j = i; j < std::min(count, i + 8); ++j) {
      byte |= static_cast<unsigned>(dw[j] >= 0) << (j - i);
      sum += std::fabs(dw[j]);
    }
    bits[i / 8] = static_cast<uint8_t>(byte);
  }
  return count == 0 ? 0.0f : static_cast<float>(sum / count);
}

}  // namespace fedge
