// The x86 paths of the binary kernels, each compiled for its instruction
// set with a function attribute (the rest of the build stays baseline
// x86-64), chosen at run time from what the CPU reports.

#include "models/kernels/binary_conv_paths.h"

#if defined(__x86_64__)

#include <immintrin.h>

namespace fedge {
namespace kernels {
namespace {

#define FEDGE_AVX2 __attribute__((target("avx2,popcnt")))
#define FEDGE_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vpopcntdq,popcnt")))

// ---------------------------------------------------------------- AVX2 ---

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
        for (int j = 0; j < 8; ++j) s[j] += __builtin_popcountll(xw ^ wp[j]);
      }
    }
    for (int j = 0; j < 8; ++j) acc[o + j] += static_cast<int32_t>(s[j]);
  }
  for (; o < out; ++o) {
    int64_t s = 0;
    for (int t = 0; t < taps; ++t) {
      for (int64_t w = 0; w < words; ++w) {
        s += __builtin_popcountll(x[t][w] ^ weights[(tap[t] * words + w) * out + o]);
      }
    }
    acc[o] += static_cast<int32_t>(s);
  }
}

FEDGE_AVX2 inline int32_t SumLanesAvx2(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// An R x C tile: u8 x s8 products summed in pairs (vpmaddubsw; b is 0 or 1,
// so no pair saturates), accumulated in int16 for up to 64 steps of 32
// (|sum| <= 64 * 254 < 2^15), then widened (vpmaddwd) into int32.
template <int R, int C>
FEDGE_AVX2 inline void TileAvx2(int64_t depth, const int8_t* a, int64_t lda,
                                const uint8_t* b, int64_t ldb, int32_t* c,
                                int64_t ldc) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i wide[R][C];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) wide[r][j] = _mm256_setzero_si256();
  constexpr int64_t kFlush = 64 * 32;
  for (int64_t k0 = 0; k0 < depth; k0 += kFlush) {
    const int64_t k1 = depth < k0 + kFlush ? depth : k0 + kFlush;
    __m256i narrow[R][C];
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < C; ++j) narrow[r][j] = _mm256_setzero_si256();
    for (int64_t k = k0; k < k1; k += 32) {
      __m256i av[R];
      for (int r = 0; r < R; ++r) {
        av[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + r * lda + k));
      }
      for (int j = 0; j < C; ++j) {
        const __m256i bv =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + j * ldb + k));
        for (int r = 0; r < R; ++r) {
          narrow[r][j] = _mm256_add_epi16(narrow[r][j], _mm256_maddubs_epi16(bv, av[r]));
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int j = 0; j < C; ++j)
        wide[r][j] = _mm256_add_epi32(wide[r][j], _mm256_madd_epi16(narrow[r][j], ones));
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) c[r * ldc + j] += SumLanesAvx2(wide[r][j]);
}

FEDGE_AVX2 void GemmAvx2(int64_t rows, int64_t cols, int64_t depth,
                         const int8_t* a, int64_t lda, const uint8_t* b,
                         int64_t ldb, int32_t* c, int64_t ldc) {
  int64_t m = 0;
  for (; m + 2 <= rows; m += 2) {
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      TileAvx2<2, 4>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
    for (; j < cols; ++j) {
      TileAvx2<2, 1>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
  }
  for (; m < rows; ++m) {
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      TileAvx2<1, 4>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
    for (; j < cols; ++j) {
      TileAvx2<1, 1>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
  }
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
  for (; o < out; ++o) {
    int64_t s = 0;
    for (int t = 0; t < taps; ++t) {
      for (int64_t w = 0; w < words; ++w) {
        s += __builtin_popcountll(x[t][w] ^ weights[(tap[t] * words + w) * out + o]);
      }
    }
    acc[o] += static_cast<int32_t>(s);
  }
}

// An R x C tile of VNNI dot products (vpdpbusd: u8 x s8, four products
// per int32 lane), 64 bytes of depth per instruction.
template <int R, int C>
FEDGE_AVX512 inline void TileAvx512(int64_t depth, const int8_t* a, int64_t lda,
                                    const uint8_t* b, int64_t ldb, int32_t* c,
                                    int64_t ldc) {
  __m512i acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) acc[r][j] = _mm512_setzero_si512();
  for (int64_t k = 0; k < depth; k += 64) {
    __m512i av[R];
    for (int r = 0; r < R; ++r) av[r] = _mm512_loadu_si512(a + r * lda + k);
    for (int j = 0; j < C; ++j) {
      const __m512i bv = _mm512_loadu_si512(b + j * ldb + k);
      for (int r = 0; r < R; ++r) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], bv, av[r]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < C; ++j) c[r * ldc + j] += _mm512_reduce_add_epi32(acc[r][j]);
}

FEDGE_AVX512 void GemmAvx512(int64_t rows, int64_t cols, int64_t depth,
                             const int8_t* a, int64_t lda, const uint8_t* b,
                             int64_t ldb, int32_t* c, int64_t ldc) {
  int64_t m = 0;
  for (; m + 4 <= rows; m += 4) {
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      TileAvx512<4, 4>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
    for (; j < cols; ++j) {
      TileAvx512<4, 1>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
  }
  for (; m < rows; ++m) {
    int64_t j = 0;
    for (; j + 4 <= cols; j += 4) {
      TileAvx512<1, 4>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
    for (; j < cols; ++j) {
      TileAvx512<1, 1>(depth, a + m * lda, lda, b + j * ldb, ldb, c + m * ldc + j, ldc);
    }
  }
}

}  // namespace

bool CpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}

bool CpuHasAvx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
         __builtin_cpu_supports("avx512vpopcntdq");
}

PathKernels Avx2Kernels() { return {&PopcountDotAvx2, &GemmAvx2}; }
PathKernels Avx512Kernels() { return {&PopcountDotAvx512, &GemmAvx512}; }

}  // namespace kernels
}  // namespace fedge

#endif  // defined(__x86_64__)
