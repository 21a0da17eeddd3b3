#include "common/codec/bit_pack.h"

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/str_cat.h"

namespace fedge {
namespace {

absl::Status CheckWidth(int bits) {
  if (bits < kMinPackBits || bits > kMaxPackBits) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bit width ", bits, " is outside [", kMinPackBits, ", ",
        kMaxPackBits, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckPackedSize(size_t have, size_t count, int bits) {
  const size_t want = PackedBytes(count, bits);
  if (have != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("packed buffer holds ", have, " bytes; ", count,
                     " codes at ", bits, " bits need ", want));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status PackBits(absl::Span<const uint8_t> codes, int bits,
                      absl::Span<uint8_t> out) {
  if (absl::Status s = CheckWidth(bits); !s.ok()) return s;
  if (absl::Status s = CheckPackedSize(out.size(), codes.size(), bits);
      !s.ok()) {
    return s;
  }
  const unsigned limit = 1u << bits;
  // Codes accumulate in a 64-bit window that is flushed a byte at a time;
  // at most 7 + 8 bits are ever pending.
  uint64_t window = 0;
  int pending = 0;
  size_t byte = 0;
  for (size_t i = 0; i < codes.size(); ++i) {
    const unsigned code = codes[i];
    if (code >= limit) {
      return absl::InvalidArgumentError(absl::StrCat(
          "code ", code, " at index ", i, " does not fit in ", bits, " bits"));
    }
    window |= static_cast<uint64_t>(code) << pending;
    pending += bits;
    while (pending >= 8) {
      out[byte++] = static_cast<uint8_t>(window);
      window >>= 8;
      pending -= 8;
    }
  }
  if (pending > 0) out[byte] = static_cast<uint8_t>(window);
  return absl::OkStatus();
}

absl::Status UnpackBits(absl::Span<const uint8_t> packed, int bits,
                        absl::Span<uint8_t> out) {
  if (absl::Status s = CheckWidth(bits); !s.ok()) return s;
  if (absl::Status s = CheckPackedSize(packed.size(), out.size(), bits);
      !s.ok()) {
    return s;
  }
  const uint64_t mask = (uint64_t{1} << bits) - 1;
  uint64_t window = 0;
  int available = 0;
  size_t byte = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (available < bits) {
      window |= static_cast<uint64_t>(packed[byte++]) << available;
      available += 8;
    }
    out[i] = static_cast<uint8_t>(window & mask);
    window >>= bits;
    available -= bits;
  }
  // Whatever is left in the window is the last byte's padding.
  if (window != 0) {
    return absl::DataLossError(absl::StrCat(
        "non-zero padding bits after ", out.size(), " codes of ", bits,
        " bits: the buffer is corrupt or holds a different count"));
  }
  return absl::OkStatus();
}

namespace {

// Packs 8 predicate results into one byte, LSB first.
template <typename Predicate>
uint8_t PackEight(const float* p, Predicate predicate) {
  unsigned byte = 0;
  for (int i = 0; i < 8; ++i) byte |= static_cast<unsigned>(predicate(p[i])) << i;
  return static_cast<uint8_t>(byte);
}

// Scalar packing of x[begin, n) into out starting at byte begin / 8.
template <typename Predicate>
void PackTail(absl::Span<const float> x, size_t begin,
              absl::Span<uint8_t> out, Predicate predicate) {
  const size_t n = x.size();
  size_t i = begin;
  for (; i + 8 <= n; i += 8) out[i / 8] = PackEight(x.data() + i, predicate);
  if (i < n) {
    unsigned last = 0;
    for (size_t j = i; j < n; ++j) {
      last |= static_cast<unsigned>(predicate(x[j])) << (j - i);
    }
    out[i / 8] = static_cast<uint8_t>(last);
  }
}

// 8 floats per byte value: the +1/-1 pattern and the keep/zero bit masks.
struct UnpackTables {
  float signs[256][8];
  uint32_t keep[256][8];
  UnpackTables() {
    for (int b = 0; b < 256; ++b) {
      for (int i = 0; i < 8; ++i) {
        const bool set = (b >> i) & 1;
        signs[b][i] = set ? 1.0f : -1.0f;
        keep[b][i] = set ? 0xFFFFFFFFu : 0u;
      }
    }
  }
};

const UnpackTables& Tables() {
  static const UnpackTables* tables = new UnpackTables();
  return *tables;
}

}  // namespace

void PackSigns(absl::Span<const float> x, absl::Span<uint8_t> out) {
  size_t i = 0;
#if defined(__SSE2__)
  const __m128 zero = _mm_setzero_ps();
  for (; i + 8 <= x.size(); i += 8) {
    const int lo = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(&x[i]), zero));
    const int hi = _mm_movemask_ps(_mm_cmpge_ps(_mm_loadu_ps(&x[i + 4]), zero));
    out[i / 8] = static_cast<uint8_t>(lo | (hi << 4));
  }
#endif
  PackTail(x, i, out, [](float v) { return v >= 0.0f; });
}

void PackAbsLeq(absl::Span<const float> x, float limit,
                absl::Span<uint8_t> out) {
  size_t i = 0;
#if defined(__SSE2__)
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  const __m128 bound = _mm_set1_ps(limit);
  for (; i + 8 <= x.size(); i += 8) {
    const __m128 a = _mm_and_ps(_mm_loadu_ps(&x[i]), abs_mask);
    const __m128 b = _mm_and_ps(_mm_loadu_ps(&x[i + 4]), abs_mask);
    const int lo = _mm_movemask_ps(_mm_cmple_ps(a, bound));
    const int hi = _mm_movemask_ps(_mm_cmple_ps(b, bound));
    out[i / 8] = static_cast<uint8_t>(lo | (hi << 4));
  }
#endif
  PackTail(x, i, out,
           [limit](float v) { return v <= limit && v >= -limit; });
}

void PackInRange(absl::Span<const float> x, float lo, float hi,
                 absl::Span<uint8_t> out) {
  size_t i = 0;
#if defined(__SSE2__)
  const __m128 low = _mm_set1_ps(lo), high = _mm_set1_ps(hi);
  for (; i + 8 <= x.size(); i += 8) {
    const __m128 a = _mm_loadu_ps(&x[i]);
    const __m128 b = _mm_loadu_ps(&x[i + 4]);
    const int first = _mm_movemask_ps(_mm_and_ps(_mm_cmpge_ps(a, low), _mm_cmple_ps(a, high)));
    const int second = _mm_movemask_ps(_mm_and_ps(_mm_cmpge_ps(b, low), _mm_cmple_ps(b, high)));
    out[i / 8] = static_cast<uint8_t>(first | (second << 4));
  }
#endif
  PackTail(x, i, out, [lo, hi](float v) { return v >= lo && v <= hi; });
}

void UnpackSigns(absl::Span<const uint8_t> packed, absl::Span<float> out) {
  const UnpackTables& t = Tables();
  const size_t n = out.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::memcpy(&out[i], t.signs[packed[i / 8]], sizeof(t.signs[0]));
  }
  for (; i < n; ++i) out[i] = (packed[i / 8] >> (i % 8)) & 1 ? 1.0f : -1.0f;
}

void ApplyMask(absl::Span<const uint8_t> packed, absl::Span<float> x) {
  const UnpackTables& t = Tables();
  const size_t n = x.size();
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint32_t* keep = t.keep[packed[i / 8]];
    uint32_t bits[8];
    std::memcpy(bits, &x[i], sizeof(bits));
    for (int j = 0; j < 8; ++j) bits[j] &= keep[j];
    std::memcpy(&x[i], bits, sizeof(bits));
  }
  for (; i < n; ++i) {
    if (!((packed[i / 8] >> (i % 8)) & 1)) x[i] = 0.0f;
  }
}

absl::Status BitWriter::Put(uint32_t code, int bits) {
  if (bits < kMinPackBits || bits > kMaxPackBits) {
    return absl::InvalidArgumentError(absl::StrCat("bit width ", bits, " is outside [1, 8]"));
  }
  if (code >> bits) {
    return absl::InvalidArgumentError(absl::StrCat("code ", code, " does not fit ", bits, " bits"));
  }
  acc_ |= static_cast<uint64_t>(code) << filled_;
  filled_ += bits;
  while (filled_ >= 8) {
    out_->push_back(static_cast<char>(acc_ & 0xFF));
    acc_ >>= 8;
    filled_ -= 8;
  }
  return absl::OkStatus();
}

void BitWriter::AlignToByte() {
  if (filled_ > 0) out_->push_back(static_cast<char>(acc_ & 0xFF));
  acc_ = 0;
  filled_ = 0;
}

bool BitReader::Get(int bits, uint32_t* code) {
  while (filled_ < bits) {
    if (at_ >= in_.size()) return false;
    acc_ |= static_cast<uint64_t>(in_[at_++]) << filled_;
    filled_ += 8;
  }
  *code = static_cast<uint32_t>(acc_ & ((uint64_t{1} << bits) - 1));
  acc_ >>= bits;
  filled_ -= bits;
  return true;
}

void BitReader::AlignToByte() {
  acc_ = 0;
  filled_ = 0;
}

}  // namespace fedge
