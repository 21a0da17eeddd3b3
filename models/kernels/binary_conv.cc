#include "models/kernels/binary_conv.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/codec/half.h"
#include "models/kernels/binary_conv_paths.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#include <xmmintrin.h>
#endif

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
                  int64_t lda, const uint8_t* b, int32_t* c, int64_t ldc,
                  bool accumulate) {
  // Plain loops the compiler vectorizes for whatever the target has (SSE2,
  // NEON): each 4-byte group of a row is repeated across the 64 bytes of a
  // packed group, multiplied byte by byte into 64 int32 lanes, and the four
  // lanes of each column are added at the end.
  for (int64_t j0 = 0; j0 < cols; j0 += 16) {
    const uint8_t* block = b + (j0 / 16) * 16 * depth;
    const int64_t width = std::min<int64_t>(16, cols - j0);
    for (int64_t m = 0; m < rows; ++m) {
      const int8_t* ar = a + m * lda;
      int32_t lanes[64] = {0};
      for (int64_t k = 0; k < depth; k += 4) {
        int8_t repeated[64];
        for (int r = 0; r < 64; r += 4) std::memcpy(repeated + r, ar + k, 4);
        const uint8_t* group = block + k * 16;
        for (int t = 0; t < 64; ++t) {
          lanes[t] += static_cast<int32_t>(repeated[t]) * static_cast<int32_t>(group[t]);
        }
      }
      int32_t* cr = c + m * ldc + j0;
      for (int64_t jj = 0; jj < width; ++jj) {
        const int32_t sum = lanes[4 * jj] + lanes[4 * jj + 1] + lanes[4 * jj + 2] + lanes[4 * jj + 3];
        cr[jj] = (accumulate ? cr[jj] : 0) + sum;
      }
    }
  }
}

void ExpandPortable(const uint64_t* w, int blocks, uint8_t* dst,
                    int64_t block_stride) {
  for (int cb = 0; cb < blocks; ++cb) {
    uint8_t* out = dst + cb * block_stride;
    for (int j = 0; j < 16; ++j) {
      for (int r = 0; r < 4; ++r) out[j * 4 + r] = (w[r] >> (16 * cb + j)) & 1;
    }
  }
}

void AdamPortable(uint16_t* w, uint16_t* m, uint16_t* v, const float* grad,
                  const uint8_t* sign_bits, int64_t begin, int64_t end,
                  const kernels::AdamFactors& f) {
  kernels::AdamScalar(w, m, v, grad, sign_bits, begin, end, f);
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

// The best path, unless FEDGE_KERNEL_PATH names another the CPU runs
// (portable, avx2, avx512-vnni): for comparing paths on one machine. A
// value that is unknown or not supported is reported once and ignored.
KernelPath InitialPath() {
  const KernelPath best = BestPath();
  const char* wanted = std::getenv("FEDGE_KERNEL_PATH");
  if (wanted == nullptr || *wanted == '\0') return best;
  for (KernelPath p : {KernelPath::kPortable, KernelPath::kAvx2, KernelPath::kAvx512}) {
    if (std::strcmp(wanted, KernelPathName(p)) == 0 && Supported(p)) return p;
  }
  std::fprintf(stderr,
               "FEDGE_KERNEL_PATH=%s: not a kernel path this CPU runs (portable, avx2, "
               "avx512-vnni); using %s\n",
               wanted, KernelPathName(best));
  return best;
}

std::atomic<int>& PathSlot() {
  static std::atomic<int> slot{static_cast<int>(InitialPath())};
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

void ScaleMaskedBits(const int32_t* acc, float scale, const uint64_t* bits,
                     int64_t first, int64_t count, float* out);

// out[i] = scale * acc[i] where bit (first + i) of `bits` is 1, else 0, for
// i < count; a null `bits` keeps everything; `round`: then rounded to
// bfloat16.
void ScaleMasked(const int32_t* acc, float scale, const uint64_t* bits,
                 int64_t first, int64_t count, float* out, bool round) {
  if (bits == nullptr) {
    for (int64_t i = 0; i < count; ++i) out[i] = scale * static_cast<float>(acc[i]);
  } else {
    ScaleMaskedBits(acc, scale, bits, first, count, out);
  }
  if (round) {
    for (int64_t i = 0; i < count; ++i) out[i] = RoundedToBFloat16(out[i]);
  }
}

void ScaleMaskedBits(const int32_t* acc, float scale, const uint64_t* bits,
                     int64_t first, int64_t count, float* out) {
  // The 8 keep factors (0 or 1) of every mask byte, low bit first.
  static const auto* table = [] {
    auto* t = new float[256][8];
    for (int b = 0; b < 256; ++b) {
      for (int k = 0; k < 8; ++k) t[b][k] = static_cast<float>((b >> k) & 1);
    }
    return t;
  }();
  int64_t i = 0;
  while (i < count) {
    const int64_t bit = first + i;
    // Up to 64 bits from an arbitrary bit position: two words spliced.
    const int shift = static_cast<int>(bit & 63);
    uint64_t word = bits[bit >> 6] >> shift;
    const int64_t have = 64 - shift;
    const int64_t take = std::min<int64_t>(64, count - i);
    if (take > have) word |= bits[(bit >> 6) + 1] << have;
    int64_t b = 0;
    for (; b + 8 <= take; b += 8) {
      const float* keep = table[(word >> b) & 0xFF];
      for (int k = 0; k < 8; ++k) {
        out[i + b + k] = scale * static_cast<float>(acc[i + b + k]) * keep[k];
      }
    }
    for (; b < take; ++b) {
      out[i + b] = scale * static_cast<float>(acc[i + b]) * static_cast<float>((word >> b) & 1);
    }
    i += take;
  }
}


// sign(W) as GEMM columns (tap, channel) over depth out_pad, packed, bits
// {0, 1}.
void WeightColumns(const uint64_t* w_signs, const BinaryConvShape& s, int64_t out_pad,
                   Scratch<uint8_t>& wb) {
  const int64_t taps = s.taps(), words = s.words();
  wb.Fill(0);
  for (int64_t t = 0; t < taps; ++t) {
    for (int64_t ch = 0; ch < s.c; ++ch) {
      const uint64_t* src = w_signs + (t * words + ch / 64) * s.out;
      const int64_t j = t * s.c + ch;
      for (int64_t o = 0; o < s.out; ++o) {
        wb[PackedGemmOffset(j, o, out_pad)] = (src[o] >> (ch % 64)) & 1;
      }
    }
  }
}

// A linear layer's backward runs over the whole batch at once: dX is one
// [batch, out] x [out, c] GEMM split by rows of the batch.
void LinearBackwardInput(const int8_t* q, float scale, const uint64_t* w_signs,
                         const uint64_t* mask, const BinaryConvShape& s,
                         float* dx, const ParallelFor& parallel, bool round) {
  const GemmFn gemm = Kernels().gemm;
  const int64_t out_pad = RoundUp64(s.out), mask_words = s.mask_words_per_sample();
  Scratch<uint8_t> wb(PackedGemmBytes(s.c, out_pad));
  WeightColumns(w_signs, s, out_pad, wb);
  constexpr int64_t kRows = 16;
  parallel((s.n + kRows - 1) / kRows, [&](int64_t b0, int64_t b1) {
    Scratch<int8_t> a(kRows * out_pad, 0);
    Scratch<int32_t> g(kRows * s.c);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * kRows, rows = std::min(kRows, s.n - n0);
      for (int64_t i = 0; i < rows; ++i) {
        std::memcpy(a.data() + i * out_pad, q + (n0 + i) * s.out, s.out);
      }
      gemm(rows, s.c, out_pad, a.data(), out_pad, wb.data(), g.data(), s.c,
           /*accumulate=*/false);
      for (int64_t i = 0; i < rows; ++i) {
        int32_t sum = 0;
        for (int64_t o = 0; o < s.out; ++o) sum += a[i * out_pad + o];
        int32_t* gr = g.data() + i * s.c;
        for (int64_t ch = 0; ch < s.c; ++ch) gr[ch] = 2 * gr[ch] - sum;
        ScaleMasked(gr, scale, mask == nullptr ? nullptr : mask + (n0 + i) * mask_words,
                    0, s.c, dx + (n0 + i) * s.c, round);
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
  Scratch<int8_t> a(s.out * depth, 0);
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t o = 0; o < s.out; ++o) a[o * depth + n] = q[n * s.out + o];
  }
  Scratch<uint8_t> xb(PackedGemmBytes(s.c, depth), 0);
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t ch = 0; ch < s.c; ++ch) {
      xb[PackedGemmOffset(ch, n, depth)] = BitAt(x_signs + n * words, ch);
    }
  }
  constexpr int64_t kRows = 16;
  parallel((s.out + kRows - 1) / kRows, [&](int64_t b0, int64_t b1) {
    Scratch<int32_t> g(kRows * s.c);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t o0 = b * kRows, rows = std::min(kRows, s.out - o0);
      gemm(rows, s.c, depth, a.data() + o0 * depth, depth, xb.data(), g.data(), s.c,
           /*accumulate=*/false);
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

// rows: `depth` rows of `cols` int8 codes (cols % 16 == 0, depth % 4 == 0)
// -> packed GEMM columns of code + 128, columns = the rows' positions.
void InterleaveCodes(const int8_t* rows, int64_t depth, int64_t cols, uint8_t* packed) {
  for (int64_t j = 0; j < cols; j += 16) {
    for (int64_t k = 0; k < depth; k += 4) {
      const int8_t* r = rows + k * cols + j;
      uint8_t* dst = packed + PackedGemmOffset(j, k, depth);
#if defined(__SSE2__)
      const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
      auto load = [&](int i) {
        return _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + i * cols)),
                             flip);
      };
      const __m128i r0 = load(0), r1 = load(1), r2 = load(2), r3 = load(3);
      const __m128i a0 = _mm_unpacklo_epi8(r0, r1), a1 = _mm_unpackhi_epi8(r0, r1);
      const __m128i b0 = _mm_unpacklo_epi8(r2, r3), b1 = _mm_unpackhi_epi8(r2, r3);
      __m128i* out = reinterpret_cast<__m128i*>(dst);
      _mm_storeu_si128(out, _mm_unpacklo_epi16(a0, b0));
      _mm_storeu_si128(out + 1, _mm_unpackhi_epi16(a0, b0));
      _mm_storeu_si128(out + 2, _mm_unpacklo_epi16(a1, b1));
      _mm_storeu_si128(out + 3, _mm_unpackhi_epi16(a1, b1));
#else
      for (int jj = 0; jj < 16; ++jj) {
        for (int kk = 0; kk < 4; ++kk) {
          dst[jj * 4 + kk] = static_cast<uint8_t>(r[kk * cols + jj] ^ 0x80);
        }
      }
#endif
    }
  }
}

}  // namespace

namespace kernels {
PathKernels PortableKernels() {
  return {&PopcountDotPortable, &GemmPortable, &ExpandPortable, &AdamPortable};
}

namespace {
inline float Bf16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
inline uint16_t FloatToBf16(float f) {
  uint32_t u;
  f = RoundedToBFloat16(f);
  std::memcpy(&u, &f, sizeof(u));
  return static_cast<uint16_t>(u >> 16);
}
}  // namespace

void AdamScalar(uint16_t* w, uint16_t* m, uint16_t* v, const float* grad,
                const uint8_t* sign_bits, int64_t begin, int64_t end, const AdamFactors& f) {
  for (int64_t i = begin; i < end; ++i) {
    const float g = grad != nullptr ? grad[i]
                                    : (((sign_bits[i >> 3] >> (i & 7)) & 1) ? f.sign_scale
                                                                            : -f.sign_scale);
    const float mi = Bf16ToFloat(m[i]) * f.beta1 + g * (1 - f.beta1);
    const float vi = Bf16ToFloat(v[i]) * f.beta2 + g * g * (1 - f.beta2);
    float wi = HalfToFloat(w[i]) - f.lr_c1 * mi / (std::sqrt(vi * f.inv_c2) + f.eps);
    if (f.clip) wi = std::min(1.0f, std::max(-1.0f, wi));
    w[i] = FloatToHalf(wi);
    m[i] = FloatToBf16(mi);
    v[i] = FloatToBf16(vi);
  }
}
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
              int64_t lda, const uint8_t* b_packed, int32_t* c, int64_t ldc) {
  Kernels().gemm(rows, cols, depth, a, lda, b_packed, c, ldc, /*accumulate=*/true);
}

void PackActivationSigns(const float* x, const BinaryConvShape& shape,
                         float mask_limit, uint64_t* signs, uint64_t* mask,
                         const ParallelFor& parallel) {
  const int64_t pixels = shape.h * shape.w, words = shape.words();
  const int64_t per_sample = shape.c * pixels;
  const int64_t mask_words = shape.mask_words_per_sample();
  parallel(shape.n, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* xn = x + n * per_sample;
      for (int64_t w = 0; w < words; ++w) {
        const int64_t c0 = 64 * w, c1 = std::min(shape.c, c0 + 64);
        uint64_t* out = signs + n * pixels * words + w;
        int64_t p = 0;
#if defined(__SSE2__)
        // 4 pixels at a time: each channel's 4 comparisons widened to 64-bit
        // lane masks and OR-ed into the 4 pixels' words.
        const __m128 zero = _mm_setzero_ps();
        for (; p + 4 <= pixels; p += 4) {
          __m128i lo = _mm_setzero_si128(), hi = lo;
          for (int64_t c = c0; c < c1; ++c) {
            const __m128i ge = _mm_castps_si128(_mm_cmpge_ps(_mm_loadu_ps(xn + c * pixels + p), zero));
            const __m128i bit = _mm_set1_epi64x(static_cast<long long>(uint64_t{1} << (c - c0)));
            lo = _mm_or_si128(lo, _mm_and_si128(_mm_unpacklo_epi32(ge, ge), bit));
            hi = _mm_or_si128(hi, _mm_and_si128(_mm_unpackhi_epi32(ge, ge), bit));
          }
          alignas(16) uint64_t lanes[4];
          _mm_store_si128(reinterpret_cast<__m128i*>(lanes), lo);
          _mm_store_si128(reinterpret_cast<__m128i*>(lanes + 2), hi);
          for (int i = 0; i < 4; ++i) out[(p + i) * words] = lanes[i];
        }
#endif
        for (; p < pixels; ++p) {
          uint64_t bits = 0;
          for (int64_t c = c0; c < c1; ++c) {
            bits |= static_cast<uint64_t>(xn[c * pixels + p] >= 0) << (c - c0);
          }
          out[p * words] = bits;
        }
      }
      if (mask == nullptr) continue;
      uint64_t* mn = mask + n * mask_words;
      int64_t i = 0;
#if defined(__SSE2__)
      const __m128 limit = _mm_set1_ps(mask_limit);
      const __m128 magnitude = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
      for (; i + 64 <= per_sample; i += 64) {
        uint64_t m = 0;
        for (int k = 0; k < 16; ++k) {
          const __m128 v = _mm_and_ps(_mm_loadu_ps(xn + i + 4 * k), magnitude);
          m |= static_cast<uint64_t>(_mm_movemask_ps(_mm_cmple_ps(v, limit))) << (4 * k);
        }
        mn[i / 64] = m;
      }
#endif
      for (; i < per_sample; i += 64) {
        const int64_t count = std::min<int64_t>(64, per_sample - i);
        uint64_t m = 0;
        for (int64_t b = 0; b < count; ++b) {
          m |= static_cast<uint64_t>(std::fabs(xn[i + b]) <= mask_limit) << b;
        }
        mn[i / 64] = m;
      }
    }
  });
}

void PackWeightSigns(const float* w, const BinaryConvShape& shape,
                     uint64_t* packed, const ParallelFor& parallel) {
  const int64_t taps = shape.taps(), words = shape.words(), out = shape.out;
  // Output channel o owns words (t, w, o) for every t, w: no two threads
  // write the same word.
  parallel(out, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      const float* wo = w + o * shape.c * taps;
      for (int64_t t = 0; t < taps; ++t) {
        for (int64_t word = 0; word < words; ++word) {
          const int64_t c0 = 64 * word, c1 = std::min(shape.c, c0 + 64);
          uint64_t bits = 0;
          for (int64_t c = c0; c < c1; ++c) {
            bits |= static_cast<uint64_t>(wo[c * taps + t] >= 0) << (c - c0);
          }
          packed[(t * words + word) * out + o] = bits;
        }
      }
    }
  });
}

namespace {

// Computes output rows of one layer into row buffers [out][ow].
class ConvRows {
 public:
  ConvRows(const uint64_t* x_signs, const uint64_t* w_signs, const BinaryConvShape& shape)
      : k_(Kernels()),
        x_(x_signs),
        w_(w_signs),
        s_(shape),
        acc_(shape.out),
        taps_x_(shape.taps()),
        taps_(shape.taps()) {}

  void Row(int64_t n, int64_t oy, float* row) {
    const int64_t ow = s_.out_w(), words = s_.words(), out = s_.out;
    for (int64_t ox = 0; ox < ow; ++ox) {
      int count = 0;
      for (int64_t ky = 0; ky < s_.kernel; ++ky) {
        const int64_t iy = oy * s_.stride - s_.pad + ky;
        if (iy < 0 || iy >= s_.h) continue;
        for (int64_t kx = 0; kx < s_.kernel; ++kx) {
          const int64_t ix = ox * s_.stride - s_.pad + kx;
          if (ix < 0 || ix >= s_.w) continue;
          taps_x_[count] = x_ + ((n * s_.h + iy) * s_.w + ix) * words;
          taps_[count] = static_cast<int>(ky * s_.kernel + kx);
          ++count;
        }
      }
      std::fill(acc_.begin(), acc_.end(), 0);
      k_.popcount_dot(taps_x_.data(), taps_.data(), count, words, w_, out, acc_.data());
      const int32_t terms = static_cast<int32_t>(count * s_.c);
      for (int64_t o = 0; o < out; ++o) row[o * ow + ox] = static_cast<float>(terms - 2 * acc_[o]);
    }
  }

 private:
  const kernels::PathKernels k_;
  const uint64_t* x_;
  const uint64_t* w_;
  const BinaryConvShape& s_;
  std::vector<int32_t> acc_;
  std::vector<const uint64_t*> taps_x_;
  std::vector<int> taps_;
};

}  // namespace

void BinaryConvForward(const uint64_t* x_signs, const uint64_t* w_signs,
                       const BinaryConvShape& shape, float* y,
                       const ParallelFor& parallel) {
  const int64_t oh = shape.out_h(), ow = shape.out_w(), out = shape.out;
  parallel(shape.n * oh, [&](int64_t r0, int64_t r1) {
    ConvRows rows(x_signs, w_signs, shape);
    std::vector<float> row(out * ow);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / oh, oy = r % oh;
      rows.Row(n, oy, row.data());
      for (int64_t o = 0; o < out; ++o) {
        std::memcpy(y + ((n * out + o) * oh + oy) * ow, row.data() + o * ow,
                    sizeof(float) * ow);
      }
    }
  });
}

void BinaryConvPoolForward(const uint64_t* x_signs, const uint64_t* w_signs,
                           const BinaryConvShape& shape, float* y, uint8_t* position,
                           const ParallelFor& parallel) {
  const int64_t oh = shape.out_h(), ow = shape.out_w(), out = shape.out;
  const int64_t ph = oh / 2, pw = ow / 2;
  parallel(shape.n * ph, [&](int64_t r0, int64_t r1) {
    ConvRows rows(x_signs, w_signs, shape);
    std::vector<float> top(out * ow), bottom(out * ow);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / ph, py = r % ph;
      rows.Row(n, 2 * py, top.data());
      rows.Row(n, 2 * py + 1, bottom.data());
      for (int64_t o = 0; o < out; ++o) {
        const float* t = top.data() + o * ow;
        const float* b = bottom.data() + o * ow;
        float* yo = y + ((n * out + o) * ph + py) * pw;
        uint8_t* po = position + ((n * out + o) * ph + py) * pw;
        for (int64_t px = 0; px < pw; ++px) {
          // Integers, never NaN: the first maximum in window order wins.
          const float v[4] = {t[2 * px], t[2 * px + 1], b[2 * px], b[2 * px + 1]};
          const int best = WindowArgmax(v);
          yo[px] = v[best];
          po[px] = static_cast<uint8_t>(best);
        }
      }
    }
  });
}

void ScatterPooledCodes(const int8_t* pooled, const uint8_t* position,
                        const BinaryConvShape& shape, int8_t* q,
                        const ParallelFor& parallel) {
  ScatterToArgmax(pooled, position, shape.n * shape.out, shape.out_h(), shape.out_w(), q,
                  parallel);
}

float QuantizeInt8(const float* dy, int64_t count, int8_t* q,
                   const ParallelFor& parallel) {
  constexpr int64_t kChunk = 1 << 16;
  const int64_t chunks = (count + kChunk - 1) / kChunk;
  std::vector<float> chunk_max(std::max<int64_t>(chunks, 1), 0.0f);
  parallel(chunks, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t begin = c * kChunk, end = std::min(count, (c + 1) * kChunk);
      int64_t i = begin;
      float m = 0;
      bool finite = true;
#if defined(__SSE2__)
      // |v| by clearing the sign bit; a value is not finite when its
      // exponent bits are all ones.
      const __m128i magnitude = _mm_set1_epi32(0x7FFFFFFF), exponent = _mm_set1_epi32(0x7F800000);
      __m128 mv = _mm_setzero_ps();
      __m128i bad = _mm_setzero_si128();
      for (; i + 4 <= end; i += 4) {
        const __m128i v = _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(dy + i)),
                                        magnitude);
        bad = _mm_or_si128(bad, _mm_cmpeq_epi32(_mm_and_si128(v, exponent), exponent));
        mv = _mm_max_ps(mv, _mm_castsi128_ps(v));
      }
      alignas(16) float lanes[4];
      _mm_store_ps(lanes, mv);
      m = std::max(std::max(lanes[0], lanes[1]), std::max(lanes[2], lanes[3]));
      finite = _mm_movemask_epi8(bad) == 0;
#endif
      for (; i < end; ++i) {
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
  // Adding and taking off 1.5 * 2^23 rounds |v| < 2^22 to the nearest
  // integer (ties to even), like the SSE conversion below does.
  constexpr float kRound = 12582912.0f;
  parallel(chunks, [&](int64_t c0, int64_t c1) {
    const int64_t end = std::min(count, c1 * kChunk);
    int64_t i = c0 * kChunk;
#if defined(__SSE2__)
    const __m128 scale_v = _mm_set1_ps(inv), hi = _mm_set1_ps(127.0f), lo = _mm_set1_ps(-127.0f);
    for (; i + 16 <= end; i += 16) {
      __m128i w[4];
      for (int k = 0; k < 4; ++k) {
        const __m128 v = _mm_mul_ps(_mm_loadu_ps(dy + i + 4 * k), scale_v);
        w[k] = _mm_cvtps_epi32(_mm_min_ps(hi, _mm_max_ps(lo, v)));
      }
      const __m128i bytes = _mm_packs_epi16(_mm_packs_epi32(w[0], w[1]), _mm_packs_epi32(w[2], w[3]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), bytes);
    }
#endif
    for (; i < end; ++i) {
      float v = dy[i] * inv;
      v = std::min(127.0f, std::max(-127.0f, v));
      q[i] = static_cast<int8_t>(static_cast<int>((v + kRound) - kRound));
    }
  });
  return scale;
}

namespace {

// Samples per block of dX's GEMM columns: about 256 columns or more (whole
// 64-column tiles) of `columns` per sample, the batch cut into equal
// blocks, a multiple of 4 of them where it allows (equal thread shares).
int64_t SamplesPerBlock(int64_t samples, int64_t columns) {
  const int64_t least = std::max<int64_t>(1, (255 + columns) / columns);
  int64_t blocks = (samples + least - 1) / least;
  blocks = std::min<int64_t>(samples, (blocks + 3) / 4 * 4);
  return (samples + blocks - 1) / blocks;
}

}  // namespace

void BinaryConvBackwardInput(const int8_t* q, float scale,
                             const uint64_t* w_signs, const uint64_t* mask,
                             const BinaryConvShape& layer, float* dx,
                             const ParallelFor& parallel, bool round_to_bfloat16) {
  if (layer.linear()) {
    LinearBackwardInput(q, scale, w_signs, mask, layer, dx, parallel, round_to_bfloat16);
    return;
  }
  // Per sample, g[(tap, c)][p] = sum over out of sign(W) * q as a GEMM
  // whose u8 operand is q + 128 (packed columns = output pixels) and whose
  // s8 operand is sign(W) = +-1; the 128 * sum sign(W) it adds per row is
  // taken off again. col2im then adds g into the input pixels each tap
  // reads, in NCHW order.
  const GemmFn gemm = Kernels().gemm;
  const BinaryConvShape& s = layer;
  const int64_t taps = s.taps(), words = s.words(), c = s.c, out = s.out;
  const int64_t out_pad = RoundUp64(out), rows = taps * c;
  const int64_t oh = s.out_h(), ow = s.out_w(), pixels = oh * ow;
  const int64_t in_pixels = s.h * s.w, mask_words = s.mask_words_per_sample();
  Scratch<int8_t> wa(rows * out_pad, 0);
  Scratch<int32_t> offset(rows, 0);
  parallel(rows, [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const int64_t t = m / c, ch = m % c;
      const uint64_t* src = w_signs + (t * words + ch / 64) * out;
      const int shift = static_cast<int>(ch % 64);
      int8_t* dst = wa.data() + m * out_pad;
      int32_t sum = 0;
      for (int64_t o = 0; o < out; ++o) {
        dst[o] = static_cast<int8_t>(2 * ((src[o] >> shift) & 1) - 1);
        sum += dst[o];
      }
      offset[m] = 128 * sum;
    }
  });
  if (s.stride == 1 && s.pad == 0 && 4 * pixels >= 3 * in_pixels) {
    // Unpadded, stride 1, the output at least 3/4 of the input: output pixel
    // (oy, ox) of the i-th sample of a block laid out at column
    // i * h * w + oy * w + ox (the input's frame; the other columns hold
    // code 0 and add exactly 0), so tap (ky, kx) reads the input pixel at
    // that column + ky * w + kx: col2im is one contiguous add per (tap,
    // channel) over a whole chunk of the block.
    const int64_t samples_max = SamplesPerBlock(s.n, in_pixels);
    const int64_t span = samples_max * in_pixels, span16 = (span + 15) / 16 * 16;
    const int64_t plane = span + s.kernel * s.w;
    const int64_t chunk = std::max<int64_t>(
        16, std::min<int64_t>(span16, (512 << 10) / (4 * rows) / 16 * 16));
    parallel((s.n + samples_max - 1) / samples_max, [&](int64_t b0, int64_t b1) {
      Scratch<int8_t> rows_q(out_pad * span16, 0);
      Scratch<uint8_t> qb(PackedGemmBytes(span16, out_pad), 128);
      Scratch<int32_t> g(rows * chunk);
      Scratch<int32_t> acc(c * plane);
      for (int64_t block = b0; block < b1; ++block) {
        const int64_t n0 = block * samples_max;
        const int64_t samples = std::min(samples_max, s.n - n0);
        for (int64_t o = 0; o < out; ++o) {
          for (int64_t i = 0; i < samples; ++i) {
            for (int64_t oy = 0; oy < oh; ++oy) {
              std::memcpy(rows_q.data() + o * span16 + i * in_pixels + oy * s.w,
                          q + (((n0 + i) * out + o) * oh + oy) * ow, ow);
            }
          }
        }
        InterleaveCodes(rows_q.data(), out_pad, span16, qb.data());
        std::fill(acc.begin(), acc.end(), 0);
        const int64_t used = samples * in_pixels;
        for (int64_t col0 = 0; col0 < used; col0 += chunk) {
          const int64_t width = std::min(chunk, used - col0);
          gemm(rows, width, out_pad, wa.data(), out_pad,
               qb.data() + PackedGemmOffset(col0, 0, out_pad), g.data(), chunk,
               /*accumulate=*/false);
          for (int64_t m = 0; m < rows; ++m) {
            const int64_t t = m / c, ch = m % c;
            int32_t* ar = acc.data() + ch * plane + col0 + (t / s.kernel) * s.w + t % s.kernel;
            const int32_t* gr = g.data() + m * chunk;
            const int32_t off = offset[m];
            for (int64_t j = 0; j < width; ++j) ar[j] += gr[j] - off;
          }
        }
        for (int64_t i = 0; i < samples; ++i) {
          const int64_t n = n0 + i;
          const uint64_t* mn = mask == nullptr ? nullptr : mask + n * mask_words;
          for (int64_t ch = 0; ch < c; ++ch) {
            ScaleMasked(acc.data() + ch * plane + i * in_pixels, scale, mn, ch * in_pixels,
                        in_pixels, dx + (n * c + ch) * in_pixels, round_to_bfloat16);
          }
        }
      }
    });
    return;
  }
  // GEMM columns are (sample, output pixel) pairs of a block of samples,
  // split into chunks (multiples of 16) that keep g within L2.
  const int64_t per_block = SamplesPerBlock(s.n, pixels);
  const int64_t max_pairs = per_block * pixels;
  const int64_t chunk = std::max<int64_t>(
      16, std::min<int64_t>((max_pairs + 15) / 16 * 16, (512 << 10) / (4 * rows) / 16 * 16));
  const int64_t pairs16 = (max_pairs + 15) / 16 * 16;
  parallel((s.n + per_block - 1) / per_block, [&](int64_t b0, int64_t b1) {
    Scratch<uint8_t> qb(PackedGemmBytes(max_pairs, out_pad), 128);
    Scratch<int8_t> rows_q(out_pad * pairs16, 0);
    Scratch<int32_t> g(rows * chunk);
    Scratch<int32_t> acc(per_block * c * in_pixels);
    for (int64_t block = b0; block < b1; ++block) {
      const int64_t n0 = block * per_block;
      const int64_t samples = std::min(per_block, s.n - n0), pairs = samples * pixels;
      // The block's codes as rows over pairs, then q + 128 in packed
      // columns: 16 pairs x 4 channels per 64 bytes.
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t i = 0; i < samples; ++i) {
          std::memcpy(rows_q.data() + o * pairs16 + i * pixels,
                      q + ((n0 + i) * out + o) * pixels, pixels);
        }
      }
      InterleaveCodes(rows_q.data(), out_pad, pairs16, qb.data());
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t k0 = 0; k0 < pairs; k0 += chunk) {
        const int64_t width = std::min(chunk, pairs - k0);
        gemm(rows, width, out_pad, wa.data(), out_pad,
             qb.data() + PackedGemmOffset(k0, 0, out_pad), g.data(), chunk,
             /*accumulate=*/false);
        // col2im over runs of one output row of one sample.
        for (int64_t k = k0; k < k0 + width;) {
          const int64_t i = k / pixels, p = k % pixels, oy = p / ow, ox0 = p % ow;
          const int64_t run = std::min(ow - ox0, k0 + width - k);
          for (int64_t t = 0; t < taps; ++t) {
            const int64_t ky = t / s.kernel, kx = t % s.kernel;
            const int64_t iy = oy * s.stride - s.pad + ky;
            if (iy < 0 || iy >= s.h) continue;
            // ox in [ox0, ox0 + run) with 0 <= ox * stride - pad + kx < w.
            int64_t lo = ox0, hi = ox0 + run;
            while (lo < hi && lo * s.stride - s.pad + kx < 0) ++lo;
            while (hi > lo && (hi - 1) * s.stride - s.pad + kx >= s.w) --hi;
            for (int64_t ch = 0; ch < c; ++ch) {
              const int64_t m = t * c + ch;
              const int32_t* gr = g.data() + m * chunk + (k - k0) - ox0;
              int32_t* ar = acc.data() + (i * c + ch) * in_pixels + iy * s.w - s.pad + kx;
              const int32_t off = offset[m];
              if (s.stride == 1) {
                for (int64_t ox = lo; ox < hi; ++ox) ar[ox] += gr[ox] - off;
              } else {
                for (int64_t ox = lo; ox < hi; ++ox) ar[ox * s.stride] += gr[ox] - off;
              }
            }
          }
          k += run;
        }
      }
      // Scale, mask, and write NCHW: the block's samples are contiguous in
      // both acc and dx.
      for (int64_t i = 0; i < samples; ++i) {
        const int64_t n = n0 + i;
        ScaleMasked(acc.data() + i * c * in_pixels, scale,
                    mask == nullptr ? nullptr : mask + n * mask_words, 0, c * in_pixels,
                    dx + n * c * in_pixels, round_to_bfloat16);
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
  const kernels::PathKernels k_ = Kernels();
  const GemmFn gemm = k_.gemm;
  const BinaryConvShape& s = layer;
  const int64_t taps = s.taps(), words = s.words(), c = s.c, out = s.out;
  const int64_t oh = s.out_h(), ow = s.out_w(), pixels = oh * ow;
  const int64_t cols = taps * c;
  // The reduction runs over (sample, output pixel) pairs; samples go in
  // blocks deep enough (>= 1024 pairs) for the GEMM, each block's GEMM split
  // by output rows across threads.
  const int64_t per_block = std::max<int64_t>(1, std::min(s.n, (1023 + pixels) / pixels));
  const int64_t depth = RoundUp64(per_block * pixels);
  // valid[t][k] = 1 where tap t of pair k lands inside the image.
  Scratch<uint8_t> valid(PackedGemmBytes(taps, depth), 0);
  for (int64_t k = 0; k < per_block * pixels; ++k) {
    const int64_t p = k % pixels, oy = p / ow, ox = p % ow;
    for (int64_t t = 0; t < taps; ++t) {
      const int64_t iy = oy * s.stride - s.pad + t / s.kernel;
      const int64_t ix = ox * s.stride - s.pad + t % s.kernel;
      valid[PackedGemmOffset(t, k, depth)] = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
    }
  }
  // For each tap and pair, the input pixel's word offset (-1: padding).
  Scratch<int64_t> source(taps * depth, -1);
  Scratch<int8_t> a(out * depth, 0);
  Scratch<uint8_t> xb(PackedGemmBytes(cols, depth), 0);
  Scratch<int32_t> acc(out * cols, 0), acc_valid(out * taps, 0);
  Scratch<int64_t> total(out * cols, 0), total_valid(out * taps, 0);
  // int32 sums stay exact while pairs * 127 < 2^31; longer runs flush.
  const int64_t flush_every =
      std::max<int64_t>(1, (int64_t{1} << 30) / (per_block * pixels * 127));
  auto flush = [&] {
    parallel(out, [&](int64_t o0, int64_t o1) {
      for (int64_t i = o0 * cols; i < o1 * cols; ++i) total[i] += acc[i];
      for (int64_t i = o0 * taps; i < o1 * taps; ++i) total_valid[i] += acc_valid[i];
      std::fill(acc.begin() + o0 * cols, acc.begin() + o1 * cols, 0);
      std::fill(acc_valid.begin() + o0 * taps, acc_valid.begin() + o1 * taps, 0);
    });
  };
  int64_t pending = 0;
  for (int64_t n0 = 0; n0 < s.n; n0 += per_block) {
    const int64_t samples = std::min(per_block, s.n - n0), pairs = samples * pixels;
    for (int64_t k = 0; k < pairs; ++k) {
      const int64_t n = n0 + k / pixels, p = k % pixels, oy = p / ow, ox = p % ow;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t iy = oy * s.stride - s.pad + t / s.kernel;
        const int64_t ix = ox * s.stride - s.pad + t % s.kernel;
        const bool inside = iy >= 0 && iy < s.h && ix >= 0 && ix < s.w;
        source[t * depth + k] = inside ? ((n * s.h + iy) * s.w + ix) * words : -1;
      }
    }
    // Codes of each output channel over the block's pairs, then the im2col
    // of the packed signs expanded to GEMM columns: (tap, 64-channel word)
    // tasks, 4 pairs x up to 64 channels per expand call.
    const bool whole_blocks = c % 16 == 0;
    for (int64_t r = 0; r < out; ++r) {
      int8_t* dst = a.data() + r * depth;
      for (int64_t i = 0; i < samples; ++i) {
        std::memcpy(dst + i * pixels, q + ((n0 + i) * out + r) * pixels, pixels);
      }
      std::fill(dst + pairs, dst + depth, 0);
    }
    parallel(taps * words, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t t = r / words, word = r % words;
        const int64_t* src = source.data() + t * depth;
        const int64_t channels = std::min<int64_t>(64, c - 64 * word);
        if (whole_blocks) {
          uint8_t* dst = xb.data() + PackedGemmOffset(t * c + 64 * word, 0, depth);
          for (int64_t k = 0; k < pairs; k += 4) {
            uint64_t group[4];
            for (int i = 0; i < 4; ++i) {
              const int64_t at = k + i < pairs ? src[k + i] : -1;
              group[i] = at < 0 ? 0 : x_signs[at + word];
            }
            k_.expand(group, static_cast<int>(channels / 16), dst + k * 16, 16 * depth);
          }
          continue;
        }
        for (int64_t ch = 64 * word; ch < 64 * word + channels; ++ch) {
          const int64_t j = t * c + ch;
          for (int64_t k = 0; k < pairs; ++k) {
            xb[PackedGemmOffset(j, k, depth)] =
                src[k] < 0 ? 0 : (x_signs[src[k] + word] >> (ch & 63)) & 1;
          }
        }
      }
    });
    parallel((out + 3) / 4, [&](int64_t b0, int64_t b1) {
      const int64_t o0 = 4 * b0, rows = std::min(out, 4 * b1) - o0;
      gemm(rows, cols, depth, a.data() + o0 * depth, depth, xb.data(),
           acc.data() + o0 * cols, cols, /*accumulate=*/true);
      gemm(rows, taps, depth, a.data() + o0 * depth, depth, valid.data(),
           acc_valid.data() + o0 * taps, taps, /*accumulate=*/true);
    });
    if (++pending == flush_every) {
      flush();
      pending = 0;
    }
  }
  flush();
  // sum q * s over valid taps = 2 * sum q * b - sum of q where valid.
  parallel(out, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) {
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t t = 0; t < taps; ++t) {
          const int64_t value = 2 * total[o * cols + t * c + ch] - total_valid[o * taps + t];
          dw[(o * c + ch) * taps + t] = scale * static_cast<float>(value);
        }
      }
    }
  });
}

void AdamUpdate16(uint16_t* w_half, uint16_t* m_bf16, uint16_t* v_bf16, const float* grad,
                  const uint8_t* sign_bits, float sign_scale, int64_t n,
                  const AdamStep& step, const ParallelFor& parallel) {
  const kernels::AdamFn adam = Kernels().adam;
  kernels::AdamFactors f;
  f.beta1 = step.beta1;
  f.beta2 = step.beta2;
  f.eps = step.eps;
  f.lr_c1 = static_cast<float>(step.lr / (1 - std::pow(double{step.beta1}, step.step)));
  f.inv_c2 = static_cast<float>(1 / (1 - std::pow(double{step.beta2}, step.step)));
  f.sign_scale = sign_scale;
  f.clip = step.clip;
  // Chunks of whole bytes of sign bits.
  constexpr int64_t kChunk = 1 << 14;
  parallel((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
    adam(w_half, m_bf16, v_bf16, grad, sign_bits, c0 * kChunk, std::min(n, c1 * kChunk), f);
  });
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
