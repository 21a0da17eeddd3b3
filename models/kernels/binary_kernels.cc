#include "models/kernels/binary_kernels.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "absl/types/span.h"
#include "common/codec/bit_pack.h"

namespace fedge {
namespace {

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
  constexpr int64_t kChunk = 8 * 2048;
  const int64_t chunks = (numel + kChunk - 1) / kChunk;
  parallel(chunks, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k) {
      fn(k * kChunk, std::min(numel, (k + 1) * kChunk));
    }
  });
}

// +1 or -1 from bit i, without a branch: signs are random, so a branch
// would mispredict half the time.
inline float SignBit(const uint8_t* bits, int64_t i) {
  return static_cast<float>(2 * ((bits[i >> 3] >> (i & 7)) & 1) - 1);
}

}  // namespace

void L1NormForward(const float* x, const float* beta, NchwShape shape,
                   float eps, float* mean, float* sigma, float* y,
                   uint8_t* sign_bits, const ParallelFor& parallel) {
  const double count = static_cast<double>(shape.n * shape.hw);
  // Two reductions per channel: the mean, then the mean absolute deviation.
  parallel(shape.c, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0;
      for (int64_t n = 0; n < shape.n; ++n) {
        const float* p = x + (n * shape.c + c) * shape.hw;
        float s = 0;
        for (int64_t i = 0; i < shape.hw; ++i) s += p[i];
        sum += s;
      }
      const float mu = static_cast<float>(sum / count);
      double dev = 0;
      for (int64_t n = 0; n < shape.n; ++n) {
        const float* p = x + (n * shape.c + c) * shape.hw;
        float s = 0;
        for (int64_t i = 0; i < shape.hw; ++i) s += std::fabs(p[i] - mu);
        dev += s;
      }
      mean[c] = mu;
      sigma[c] = static_cast<float>(dev / count) + eps;
    }
  });
  // One pass writes y and the sign bits; sign(xhat) = (x >= mean). Chunks
  // start on byte boundaries, so bits accumulate into whole bytes.
  ForByteAlignedChunks(shape.numel(), parallel, [&](int64_t begin, int64_t end) {
    uint8_t* out = sign_bits + begin / 8;
    unsigned byte = 0;
    int filled = 0;
    ForChannelRuns(begin, end, shape, [&](int64_t b, int64_t e, int64_t c) {
      const float mu = mean[c], inv = 1.0f / sigma[c], shift = beta[c];
      for (int64_t i = b; i < e; ++i) {
        y[i] = (x[i] - mu) * inv + shift;
        byte |= static_cast<unsigned>(x[i] >= mu) << filled;
        if (++filled == 8) {
          *out++ = static_cast<uint8_t>(byte);
          byte = 0;
          filled = 0;
        }
      }
    });
    if (filled > 0) *out = static_cast<uint8_t>(byte);
  });
}

void L1NormBackward(const float* dy, const uint8_t* sign_bits,
                    const float* sigma, const float* mean_abs,
                    NchwShape shape, float* dx, float* dbeta,
                    const ParallelFor& parallel) {
  const double count = static_cast<double>(shape.n * shape.hw);
  std::vector<float> g_mean(shape.c), corr(shape.c);
  parallel(shape.c, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sum = 0, signed_sum = 0;
      for (int64_t n = 0; n < shape.n; ++n) {
        const int64_t base = (n * shape.c + c) * shape.hw;
        float s = 0, ss = 0;
        for (int64_t i = 0; i < shape.hw; ++i) {
          s += dy[base + i];
          ss += dy[base + i] * SignBit(sign_bits, base + i);
        }
        sum += s;
        signed_sum += ss;
      }
      dbeta[c] = static_cast<float>(sum);
      g_mean[c] = static_cast<float>(sum / count / sigma[c]);
      corr[c] = static_cast<float>(signed_sum / count / sigma[c]) * mean_abs[c];
    }
  });
  ForByteAlignedChunks(shape.numel(), parallel, [&](int64_t begin, int64_t end) {
    ForChannelRuns(begin, end, shape, [&](int64_t b, int64_t e, int64_t c) {
      const float inv = 1.0f / sigma[c], gm = g_mean[c], k = corr[c];
      for (int64_t i = b; i < e; ++i) {
        dx[i] = dy[i] * inv - gm - SignBit(sign_bits, i) * k;
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
          int best = 0;
          for (int k = 1; k < 4; ++k) {
            if (std::isnan(v[best])) break;
            if (v[k] > v[best] || std::isnan(v[k])) best = k;
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
  const int64_t oh = height / 2, ow = width / 2;
  parallel(planes, [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      float* out = dx + p * height * width;
      std::memset(out, 0, sizeof(float) * height * width);
      const float* g = dy + p * oh * ow;
      const uint8_t* pos = position + p * oh * ow;
      for (int64_t r = 0; r < oh; ++r) {
        for (int64_t c = 0; c < ow; ++c) {
          const int k = pos[r * ow + c];
          out[(2 * r + k / 2) * width + 2 * c + k % 2] = g[r * ow + c];
        }
      }
    }
  });
}

void RoundToBFloat16(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], sizeof(u));
    const bool finite = (u & 0x7F800000u) != 0x7F800000u;
    const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    u = finite ? rounded : u;
    std::memcpy(&x[i], &u, sizeof(u));
  }
}

}  // namespace fedge
