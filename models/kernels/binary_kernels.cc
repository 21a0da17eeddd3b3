#include "models/kernels/binary_kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/types/span.h"
#include "common/codec/bit_pack.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fedge {
namespace {

// Elements per pass over a chunk: the chunk's scratch stays in L1/L2.
constexpr int64_t kChunk = 8 * 2048;

// Calls fn(begin, end, channel) for the runs of one channel that make up
// the flat range [begin, end) of an NCHW buffer.
template <typename Fn>
void ForChannelRuns(int64_t begin, int64_t end, NchwShape shape, Fn fn) {
  int64_t f = begin;
  while (f < end) {
    const int64_t block = f / shape.hw;
    const int64_t stop = std::min(end, (block + 1) * shape.hw);
    fn(f, stop, block % shape.c);
    f = stop;
  }
}

// Splits [0, numel) into chunks whose starts are multiples of 8 elements,
// so each chunk owns whole bytes of a 1-bit buffer.
template <typename Fn>
void ForByteAlignedChunks(int64_t numel, const ParallelFor& parallel, Fn fn) {
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  parallel(chunks, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) {
      fn(k * kChunk, std::min(numel, (k + 1) * kChunk));
    }
  });
}

// flags[i] (0 or 1) -> bits, 8 flags per byte, low bit first; count % 8
// may leave a partial last byte.
void PackFlags(const uint8_t* flags, int64_t count, uint8_t* out) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    uint64_t v;
    std::memcpy(&v, flags + i, 8);
    // Byte k (0 or 1) lands on bit 56 + k: each partial product has its
    // own bit of the top byte and none carries (checked for all 256).
    out[i / 8] = static_cast<uint8_t>((v * 0x0102040810204080ULL) >> 56);
  }
  if (i < count) {
    unsigned byte = 0;
    for (int64_t k = i; k < count; ++k) byte |= static_cast<unsigned>(flags[k]) << (k - i);
    out[i / 8] = static_cast<uint8_t>(byte);
  }
}

// Sums with 8 independent lanes (two SSE registers): a single running float
// sum is one dependent add per element, several times slower.
float SumOf(const float* p, int64_t n) {
  int64_t i = 0;
  float total = 0;
#if defined(__SSE2__)
  __m128 a = _mm_setzero_ps(), b = a;
  for (; i + 8 <= n; i += 8) {
    a = _mm_add_ps(a, _mm_loadu_ps(p + i));
    b = _mm_add_ps(b, _mm_loadu_ps(p + i + 4));
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_add_ps(a, b));
  total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
  for (; i < n; ++i) total += p[i];
  return total;
}

// sum |p[i] - mu|.
float AbsDeviationOf(const float* p, int64_t n, float mu) {
  int64_t i = 0;
  float total = 0;
#if defined(__SSE2__)
  const __m128 m = _mm_set1_ps(mu);
  const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  __m128 a = _mm_setzero_ps(), b = a;
  for (; i + 8 <= n; i += 8) {
    a = _mm_add_ps(a, _mm_and_ps(_mm_sub_ps(_mm_loadu_ps(p + i), m), magnitude));
    b = _mm_add_ps(b, _mm_and_ps(_mm_sub_ps(_mm_loadu_ps(p + i + 4), m), magnitude));
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, _mm_add_ps(a, b));
  total = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
  for (; i < n; ++i) total += std::fabs(p[i] - mu);
  return total;
}

// *sum += sum dy[i], *signed_sum += sum dy[i] * s[i].
void SumsOf(const float* dy, const float* s, int64_t n, float* sum, float* signed_sum) {
  int64_t i = 0;
  float a = 0, z = 0;
#if defined(__SSE2__)
  __m128 av = _mm_setzero_ps(), zv = av;
  for (; i + 4 <= n; i += 4) {
    const __m128 d = _mm_loadu_ps(dy + i);
    av = _mm_add_ps(av, d);
    zv = _mm_add_ps(zv, _mm_mul_ps(d, _mm_loadu_ps(s + i)));
  }
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, av);
  a = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
  _mm_store_ps(lanes, zv);
  z = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
  for (; i < n; ++i) {
    a += dy[i];
    z += dy[i] * s[i];
  }
  *sum += a;
  *signed_sum += z;
}

// The 8 floats (+1 / -1) of every byte of sign bits, low bit first.
struct SignTable {
  float values[256][8];
  SignTable() {
    for (int b = 0; b < 256; ++b) {
      for (int k = 0; k < 8; ++k) values[b][k] = ((b >> k) & 1) ? 1.0f : -1.0f;
    }
  }
};

// bits -> +1 / -1 floats, for `count` elements from a byte boundary.
void UnpackSignFloats(const uint8_t* bits, int64_t count, float* out) {
  static const SignTable* table = new SignTable();
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) std::memcpy(out + i, table->values[bits[i >> 3]], 32);
  for (; i < count; ++i) out[i] = table->values[bits[i >> 3]][i & 7];
}



ScratchAllocator& CurrentScratch() {
  static ScratchAllocator allocator;
  return allocator;
}

}  // namespace

void SetScratchAllocator(ScratchAllocator allocator) { CurrentScratch() = allocator; }

void* AllocateScratch(size_t bytes) {
  const ScratchAllocator& a = CurrentScratch();
  if (a.allocate != nullptr) return a.allocate(bytes);
  return ::operator new(bytes == 0 ? 1 : bytes);
}

void ReleaseScratch(void* data) {
  const ScratchAllocator& a = CurrentScratch();
  if (a.release != nullptr) {
    a.release(data);
  } else {
    ::operator delete(data);
  }
}

void L1NormForward(const float* x, const float* beta, NchwShape shape,
                   float eps, float* mean, float* sigma, float* y,
                   uint8_t* sign_bits, const ParallelFor& parallel) {
  const double count = static_cast<double>(shape.n * shape.hw);
  // Two reductions per channel: the mean, then the mean absolute deviation.
  parallel(shape.c, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < shape.n; ++n) {
        sum += SumOf(x + (n * shape.c + c) * shape.hw, shape.hw);
      }
      const float mu = static_cast<float>(sum / count);
      double dev = 0;
      for (int64_t n = 0; n < shape.n; ++n) {
        dev += AbsDeviationOf(x + (n * shape.c + c) * shape.hw, shape.hw, mu);
      }
      mean[c] = mu;
      sigma[c] = static_cast<float>(dev / count) + eps;
    }
  });
  // One pass writes y and the sign bits; sign(xhat) = (x >= mean). Chunks
  // start on byte boundaries, so each owns whole bytes of sign_bits.
  ForByteAlignedChunks(shape.numel(), parallel, [&](int64_t begin, int64_t end) {
    uint8_t flags[kChunk];
    ForChannelRuns(begin, end, shape, [&](int64_t b, int64_t e, int64_t c) {
      const float mu = mean[c], inv = 1.0f / sigma[c], shift = beta[c];
      uint8_t* f = flags - begin;
      for (int64_t i = b; i < e; ++i) {
        y[i] = (x[i] - mu) * inv + shift;
        f[i] = x[i] >= mu;
      }
    });
    PackFlags(flags, end - begin, sign_bits + begin / 8);
  });
}

void L1NormBackward(const float* dy, const uint8_t* sign_bits,
                    const float* sigma, const float* mean_abs,
                    NchwShape shape, float* dx, float* dbeta,
                    const ParallelFor& parallel, bool round_to_bfloat16) {
  const double count = static_cast<double>(shape.n * shape.hw);
  // Per-channel sums of dy and dy * s, chunk by chunk (whole bytes of
  // bits each), then added in chunk order: the same result whatever the
  // threads.
  const int64_t chunks = (shape.numel() + kChunk - 1) / kChunk;
  std::vector<double> part_sum(chunks * shape.c, 0.0), part_signed(chunks * shape.c, 0.0);
  ForByteAlignedChunks(shape.numel(), parallel, [&](int64_t begin, int64_t end) {
    float signs[kChunk];
    UnpackSignFloats(sign_bits + begin / 8, end - begin, signs);
    double* ps = part_sum.data() + (begin / kChunk) * shape.c;
    double* pz = part_signed.data() + (begin / kChunk) * shape.c;
    ForChannelRuns(begin, end, shape, [&](int64_t b, int64_t e, int64_t c) {
      float a = 0, z = 0;
      SumsOf(dy + b, signs + (b - begin), e - b, &a, &z);
      ps[c] += a;
      pz[c] += z;
    });
  });
  std::vector<double> sum(shape.c, 0.0), signed_sum(shape.c, 0.0);
  for (int64_t k = 0; k < chunks; ++k) {
    for (int64_t c = 0; c < shape.c; ++c) {
      sum[c] += part_sum[k * shape.c + c];
      signed_sum[c] += part_signed[k * shape.c + c];
    }
  }
  std::vector<float> g_mean(shape.c), corr(shape.c);
  for (int64_t c = 0; c < shape.c; ++c) {
    dbeta[c] = static_cast<float>(sum[c]);
    g_mean[c] = static_cast<float>(sum[c] / count / sigma[c]);
    corr[c] = static_cast<float>(signed_sum[c] / count / sigma[c]) * mean_abs[c];
  }
  ForByteAlignedChunks(shape.numel(), parallel, [&](int64_t begin, int64_t end) {
    float signs[kChunk];
    UnpackSignFloats(sign_bits + begin / 8, end - begin, signs);
    ForChannelRuns(begin, end, shape, [&](int64_t b, int64_t e, int64_t c) {
      const float inv = 1.0f / sigma[c], gm = g_mean[c], k = corr[c];
      const float* s = signs - begin;
      if (round_to_bfloat16) {
        for (int64_t i = b; i < e; ++i) dx[i] = RoundedToBFloat16(dy[i] * inv - gm - s[i] * k);
      } else {
        for (int64_t i = b; i < e; ++i) dx[i] = dy[i] * inv - gm - s[i] * k;
      }
    });
  });
}

void MaxPool2x2Forward(const float* x, int64_t planes, int64_t height,
                       int64_t width, float* y, uint8_t* position,
                       const ParallelFor& parallel) {
  const int64_t oh = height / 2, ow = width / 2;
  parallel(planes, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const float* in = x + p * height * width;
      float* out = y + p * oh * ow;
      uint8_t* pos = position + p * oh * ow;
      for (int64_t r = 0; r < oh; ++r) {
        const float* top = in + 2 * r * width;
        const float* bottom = top + width;
        for (int64_t c = 0; c < ow; ++c) {
          const float v[4] = {top[2 * c], top[2 * c + 1], bottom[2 * c],
                              bottom[2 * c + 1]};
          // A NaN (never equal to itself) sends the window to the slow
          // path, where the first NaN wins.
          int best = WindowArgmax(v);
          if ((v[0] != v[0]) | (v[1] != v[1]) | (v[2] != v[2]) | (v[3] != v[3])) {
            best = 0;
            for (int k = 0; k < 4; ++k) {
              if (std::isnan(v[k])) {
                best = k;
                break;
              }
            }
          }
          out[r * ow + c] = v[best];
          pos[r * ow + c] = static_cast<uint8_t>(best);
        }
      }
    }
  });
}

void MaxPool2x2Backward(const float* dy, const uint8_t* position,
                        int64_t planes, int64_t height, int64_t width,
                        float* dx, const ParallelFor& parallel) {
  ScatterToArgmax(dy, position, planes, height, width, dx, parallel);
}

void RoundToBFloat16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = RoundedToBFloat16(x[i]);
}

}  // namespace fedge
