// The x86 paths of the binary kernels, each compiled for its instruction
// set with a function attribute (the rest of the build stays baseline
// x86-64), chosen at run time from what the CPU reports.

#include "models/kernels/binary_conv_paths.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>

namespace fedge {
namespace kernels {
namespace {

#define FEDGE_AVX2 __attribute__((target("avx2,popcnt")))
#define FEDGE_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vpopcntdq,popcnt")))

// ---------------------------------------------------------------- AVX2 ---

// Outputs [from, out) one at a time with scalar POPCNT: the tail both x86
// paths leave after their blocks.
FEDGE_AVX2 inline void PopcountDotTail(const uint64_t* const* x, const int* tap, int taps,
                                       int64_t words, const uint64_t* weights, int64_t out,
                                       int64_t from, int32_t* acc) {
  for (int64_t o = from; o < out; ++o) {
    int64_t s = 0;
    for (int t = 0; t < taps; ++t) {
      for (int64_t w = 0; w < words; ++w) {
        s += __builtin_popcountll(x[t][w] ^ weights[(tap[t] * words + w) * out + o]);
      }
    }
    acc[o] += static_cast<int32_t>(s);
  }
}

// Scalar POPCNT in blocks of 8 outputs: 8 independent accumulators keep the
// popcount unit busy; the weights of 8 outputs are adjacent.
FEDGE_AVX2 void PopcountDotAvx2(const uint64_t* const* x, const int* tap,
                                int taps, int64_t words,
                                const uint64_t* weights, int64_t out,
                                int32_t* acc) {
  int64_t o = 0;
  for (; o + 8 <= out; o += 8) {
    int64_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int t = 0; t < taps; ++t) {
      for (int64_t w = 0; w < words; ++w) {
        const uint64_t xw = x[t][w];
        const uint64_t* wp = weights + (tap[t] * words + w) * out + o;
        #pragma GCC unroll 16
        for (int j = 0; j < 8; ++j) s[j] += __builtin_popcountll(xw ^ wp[j]);
      }
    }
    #pragma GCC unroll 16
    for (int j = 0; j < 8; ++j) acc[o + j] += static_cast<int32_t>(s[j]);
  }
  PopcountDotTail(x, tap, taps, words, weights, out, o, acc);
}

// Stores acc (8 int32 columns) added into c[0..cols), cols <= 8.
FEDGE_AVX2 inline void AddColumnsAvx2(int32_t* c, __m256i acc, int64_t cols,
                                      bool accumulate) {
  if (cols >= 8) {
    __m256i* dst = reinterpret_cast<__m256i*>(c);
    if (accumulate) acc = _mm256_add_epi32(_mm256_loadu_si256(dst), acc);
    _mm256_storeu_si256(dst, acc);
    return;
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  for (int64_t j = 0; j < cols; ++j) c[j] = (accumulate ? c[j] : 0) + lanes[j];
}

// R rows x one block of 16 columns. Each 4-byte group of a row is
// broadcast against 8 columns x 4 bytes of b (vpmaddubsw: u8 x s8 summed in
// pairs; b is 0 or 1, so nothing saturates), accumulated in int16 for up to
// 64 groups (|sum| <= 64 * 254 < 2^15), then widened by vpmaddwd, which also
// adds each column's two pairs.
template <int R>
FEDGE_AVX2 inline void TileAvx2(int64_t depth, const int8_t* a, int64_t lda,
                                const uint8_t* b, int32_t* c, int64_t ldc,
                                int64_t cols, bool accumulate) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i wide[R][2];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r) wide[r][0] = wide[r][1] = _mm256_setzero_si256();
  constexpr int64_t kFlush = 64 * 4;
  for (int64_t k0 = 0; k0 < depth; k0 += kFlush) {
    const int64_t k1 = depth < k0 + kFlush ? depth : k0 + kFlush;
    __m256i narrow[R][2];
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) narrow[r][0] = narrow[r][1] = _mm256_setzero_si256();
    for (int64_t k = k0; k < k1; k += 4) {
      const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * 16));
      const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k * 16 + 32));
      #pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        int32_t group;
        __builtin_memcpy(&group, a + r * lda + k, 4);
        const __m256i av = _mm256_set1_epi32(group);
        narrow[r][0] = _mm256_add_epi16(narrow[r][0], _mm256_maddubs_epi16(b0, av));
        narrow[r][1] = _mm256_add_epi16(narrow[r][1], _mm256_maddubs_epi16(b1, av));
      }
    }
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      wide[r][0] = _mm256_add_epi32(wide[r][0], _mm256_madd_epi16(narrow[r][0], ones));
      wide[r][1] = _mm256_add_epi32(wide[r][1], _mm256_madd_epi16(narrow[r][1], ones));
    }
  }
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    AddColumnsAvx2(c + r * ldc, wide[r][0], cols, accumulate);
    if (cols > 8) AddColumnsAvx2(c + r * ldc + 8, wide[r][1], cols - 8, accumulate);
  }
}

FEDGE_AVX2 void ExpandAvx2(const uint64_t* w, int blocks, uint8_t* dst,
                           int64_t block_stride) {
  const __m256i low = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i high = _mm256_slli_epi32(low, 8);
  for (int cb = 0; cb < blocks; ++cb) {
    __m256i lo = _mm256_setzero_si256(), hi = lo;
    #pragma GCC unroll 16
    for (int r = 0; r < 4; ++r) {
      const __m256i v = _mm256_set1_epi32(static_cast<int>((w[r] >> (16 * cb)) & 0xFFFF));
      const __m256i one = _mm256_set1_epi32(1 << (8 * r));
      lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, low), low), one));
      hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_and_si256(v, high), high), one));
    }
    uint8_t* out = dst + cb * block_stride;
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), lo);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32), hi);
  }
}

FEDGE_AVX2 void GemmAvx2(int64_t rows, int64_t cols, int64_t depth,
                         const int8_t* a, int64_t lda, const uint8_t* b,
                         int32_t* c, int64_t ldc, bool accumulate) {
  const int64_t block_bytes = depth * 16;
  for (int64_t j = 0; j < cols; j += 16) {
    const uint8_t* bj = b + (j / 16) * block_bytes;
    const int64_t width = cols - j < 16 ? cols - j : 16;
    int64_t m = 0;
    for (; m + 4 <= rows; m += 4) {
      TileAvx2<4>(depth, a + m * lda, lda, bj, c + m * ldc + j, ldc, width, accumulate);
    }
    for (; m < rows; ++m) {
      TileAvx2<1>(depth, a + m * lda, lda, bj, c + m * ldc + j, ldc, width, accumulate);
    }
  }
}

// No FMA: a fused multiply-add rounds differently from the portable path,
// and every path must train to the same bits.
#define FEDGE_F16C __attribute__((target("avx2,f16c")))

// 8 floats -> 8 bfloat16 words, rounded as RoundedToBFloat16 (NaN and
// infinity kept).
FEDGE_F16C inline __m128i ToBf16(__m256 x) {
  const __m256i exponent = _mm256_set1_epi32(0x7F800000);
  const __m256i u = _mm256_castps_si256(x);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb);
  const __m256i special = _mm256_cmpeq_epi32(_mm256_and_si256(u, exponent), exponent);
  r = _mm256_srli_epi32(_mm256_blendv_epi8(r, u, special), 16);
  // 8 x 32-bit -> 8 x 16-bit (values < 2^16: unsigned saturation is exact).
  return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

FEDGE_F16C inline __m256 FromBf16(const uint16_t* p) {
  const __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(x, 16));
}

// Adam on 8 values at a time: float16 <-> float32 by F16C (round to
// nearest even), bfloat16 by shifts with the same rounding as
// RoundedToBFloat16 (NaN and infinity kept).
FEDGE_F16C void AdamAvx2(uint16_t* w, uint16_t* m, uint16_t* v,
                                                         const float* grad,
                                                         const uint8_t* sign_bits,
                                                         int64_t begin, int64_t end,
                                                         const AdamFactors& f) {
  int64_t i = begin;
  const __m256 b1 = _mm256_set1_ps(f.beta1), nb1 = _mm256_set1_ps(1 - f.beta1);
  const __m256 b2 = _mm256_set1_ps(f.beta2), nb2 = _mm256_set1_ps(1 - f.beta2);
  const __m256 lr = _mm256_set1_ps(f.lr_c1), ic2 = _mm256_set1_ps(f.inv_c2);
  const __m256 eps = _mm256_set1_ps(f.eps), one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-1.0f);
  const __m256i lane_bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 scale = _mm256_set1_ps(f.sign_scale);
  // Start on a byte of sign bits.
  const int64_t head = std::min(end, (begin + 7) / 8 * 8);
  AdamScalar(w, m, v, grad, sign_bits, begin, head, f);
  for (i = head; i + 8 <= end; i += 8) {
    __m256 g;
    if (grad != nullptr) {
      g = _mm256_loadu_ps(grad + i);
    } else {
      const __m256i bits = _mm256_set1_epi32(sign_bits[i >> 3]);
      const __m256 set = _mm256_castsi256_ps(
          _mm256_cmpeq_epi32(_mm256_and_si256(bits, lane_bit), lane_bit));
      g = _mm256_blendv_ps(_mm256_sub_ps(_mm256_setzero_ps(), scale), scale, set);
    }
    const __m256 mi = _mm256_add_ps(_mm256_mul_ps(FromBf16(m + i), b1), _mm256_mul_ps(g, nb1));
    const __m256 vi =
        _mm256_add_ps(_mm256_mul_ps(FromBf16(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(g, g), nb2));
    const __m256 wi0 = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + i)));
    const __m256 denom = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(vi, ic2)), eps);
    __m256 wi = _mm256_sub_ps(wi0, _mm256_div_ps(_mm256_mul_ps(lr, mi), denom));
    if (f.clip) wi = _mm256_min_ps(one, _mm256_max_ps(neg, wi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w + i), _mm256_cvtps_ph(wi, _MM_FROUND_TO_NEAREST_INT));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(m + i), ToBf16(mi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(v + i), ToBf16(vi));
  }
  AdamScalar(w, m, v, grad, sign_bits, i, end, f);
}

// ------------------------------------------------------------- AVX-512 ---

// Vector popcount over 8 outputs per register, 32 outputs per block held
// in registers across every tap and word.
FEDGE_AVX512 void PopcountDotAvx512(const uint64_t* const* x, const int* tap,
                                    int taps, int64_t words,
                                    const uint64_t* weights, int64_t out,
                                    int32_t* acc) {
  int64_t o = 0;
  for (; o + 32 <= out; o += 32) {
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (int t = 0; t < taps; ++t) {
      for (int64_t w = 0; w < words; ++w) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(x[t][w]));
        const uint64_t* wp = weights + (tap[t] * words + w) * out + o;
        s0 = _mm512_add_epi64(s0, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wp))));
        s1 = _mm512_add_epi64(s1, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wp + 8))));
        s2 = _mm512_add_epi64(s2, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wp + 16))));
        s3 = _mm512_add_epi64(s3, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wp + 24))));
      }
    }
    const __m512i sums[4] = {s0, s1, s2, s3};
    #pragma GCC unroll 16
    for (int j = 0; j < 4; ++j) {
      __m256i* dst = reinterpret_cast<__m256i*>(acc + o + 8 * j);
      _mm256_storeu_si256(dst, _mm256_add_epi32(_mm256_loadu_si256(dst),
                                                _mm512_cvtepi64_epi32(sums[j])));
    }
  }
  for (; o + 8 <= out; o += 8) {
    __m512i s = _mm512_setzero_si512();
    for (int t = 0; t < taps; ++t) {
      for (int64_t w = 0; w < words; ++w) {
        const __m512i xv = _mm512_set1_epi64(static_cast<long long>(x[t][w]));
        const uint64_t* wp = weights + (tap[t] * words + w) * out + o;
        s = _mm512_add_epi64(s, _mm512_popcnt_epi64(_mm512_xor_si512(xv, _mm512_loadu_si512(wp))));
      }
    }
    __m256i* dst = reinterpret_cast<__m256i*>(acc + o);
    _mm256_storeu_si256(dst, _mm256_add_epi32(_mm256_loadu_si256(dst), _mm512_cvtepi64_epi32(s)));
  }
  PopcountDotTail(x, tap, taps, words, weights, out, o, acc);
}

// R rows x NB blocks of 16 columns in registers: each 4-byte group of a
// row is broadcast and multiplied into 16 columns x 4 bytes of b by one
// vpdpbusd (u8 x s8, four products per int32 lane).
template <int R, int NB>
FEDGE_AVX512 inline void TileAvx512(int64_t depth, const int8_t* a, int64_t lda,
                                    const uint8_t* b, int64_t block_bytes,
                                    int32_t* c, int64_t ldc, int64_t cols,
                                    bool accumulate) {
  __m512i acc[R][NB];
  #pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
    #pragma GCC unroll 16
    for (int nb = 0; nb < NB; ++nb) acc[r][nb] = _mm512_setzero_si512();
  for (int64_t k = 0; k < depth; k += 4) {
    __m512i bv[NB];
    #pragma GCC unroll 16
    for (int nb = 0; nb < NB; ++nb) bv[nb] = _mm512_loadu_si512(b + nb * block_bytes + k * 16);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t group;
      __builtin_memcpy(&group, a + r * lda + k, 4);
      const __m512i av = _mm512_set1_epi32(group);
      #pragma GCC unroll 16
      for (int nb = 0; nb < NB; ++nb) acc[r][nb] = _mm512_dpbusd_epi32(acc[r][nb], bv[nb], av);
    }
  }
  #pragma GCC unroll 16
  for (int nb = 0; nb < NB; ++nb) {
    const int64_t left = cols - 16 * nb;
    const __mmask16 keep =
        left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      int32_t* dst = c + r * ldc + 16 * nb;
      const __m512i sum =
          accumulate ? _mm512_add_epi32(_mm512_maskz_loadu_epi32(keep, dst), acc[r][nb])
                     : acc[r][nb];
      _mm512_mask_storeu_epi32(dst, keep, sum);
    }
  }
}

template <int R>
FEDGE_AVX512 inline void RowsAvx512(int64_t cols, int64_t depth, const int8_t* a,
                                    int64_t lda, const uint8_t* b, int32_t* c,
                                    int64_t ldc, bool accumulate) {
  const int64_t block_bytes = depth * 16;
  int64_t j = 0;
  for (; j + 64 <= cols; j += 64) {
    TileAvx512<R, 4>(depth, a, lda, b + (j / 16) * block_bytes, block_bytes, c + j, ldc, 64,
                     accumulate);
  }
  for (; j < cols; j += 16) {
    TileAvx512<R, 1>(depth, a, lda, b + (j / 16) * block_bytes, block_bytes, c + j, ldc,
                     cols - j, accumulate);
  }
}

FEDGE_AVX512 void ExpandAvx512(const uint64_t* w, int blocks, uint8_t* dst,
                               int64_t block_stride) {
  for (int cb = 0; cb < blocks; ++cb) {
    const int shift = 16 * cb;
    __m512i v = _mm512_maskz_set1_epi32(static_cast<__mmask16>(w[0] >> shift), 1);
    v = _mm512_or_si512(v, _mm512_maskz_set1_epi32(static_cast<__mmask16>(w[1] >> shift), 1 << 8));
    v = _mm512_or_si512(v, _mm512_maskz_set1_epi32(static_cast<__mmask16>(w[2] >> shift), 1 << 16));
    v = _mm512_or_si512(v, _mm512_maskz_set1_epi32(static_cast<__mmask16>(w[3] >> shift), 1 << 24));
    _mm512_storeu_si512(dst + cb * block_stride, v);
  }
}

FEDGE_AVX512 void GemmAvx512(int64_t rows, int64_t cols, int64_t depth,
                             const int8_t* a, int64_t lda, const uint8_t* b,
                             int32_t* c, int64_t ldc, bool accumulate) {
  int64_t m = 0;
  for (; m + 4 <= rows; m += 4) {
    RowsAvx512<4>(cols, depth, a + m * lda, lda, b, c + m * ldc, ldc, accumulate);
  }
  for (; m < rows; ++m) {
    RowsAvx512<1>(cols, depth, a + m * lda, lda, b, c + m * ldc, ldc, accumulate);
  }
}

}  // namespace

bool CpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt") &&
         __builtin_cpu_supports("f16c");
}

bool CpuHasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512vpopcntdq");
}

PathKernels Avx2Kernels() { return {&PopcountDotAvx2, &GemmAvx2, &ExpandAvx2, &AdamAvx2}; }
PathKernels Avx512Kernels() {
  return {&PopcountDotAvx512, &GemmAvx512, &ExpandAvx512, &AdamAvx2};
}

}  // namespace kernels
}  // namespace fedge

#endif  // defined(__x86_64__)
