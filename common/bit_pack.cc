#include "common/bit_pack.h"

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

template <typename Predicate>
void PackPredicate(absl::Span<const float> x, absl::Span<uint8_t> out,
                   Predicate predicate) {
  const size_t n = x.size();
  const size_t full = n / 8;
  const float* p = x.data();
  for (size_t b = 0; b < full; ++b, p += 8) {
    out[b] = static_cast<uint8_t>(
        predicate(p[0]) | predicate(p[1]) << 1 | predicate(p[2]) << 2 |
        predicate(p[3]) << 3 | predicate(p[4]) << 4 | predicate(p[5]) << 5 |
        predicate(p[6]) << 6 | predicate(p[7]) << 7);
  }
  if (full * 8 < n) {
    uint8_t last = 0;
    for (size_t i = full * 8; i < n; ++i) {
      last |= static_cast<uint8_t>(predicate(x[i]) << (i % 8));
    }
    out[full] = last;
  }
}

}  // namespace

void PackSigns(absl::Span<const float> x, absl::Span<uint8_t> out) {
  PackPredicate(x, out, [](float v) { return static_cast<int>(v >= 0.0f); });
}

void PackAbsLeq(absl::Span<const float> x, float limit,
                absl::Span<uint8_t> out) {
  PackPredicate(x, out, [limit](float v) {
    return static_cast<int>(v <= limit && v >= -limit);
  });
}

void UnpackSigns(absl::Span<const uint8_t> packed, absl::Span<float> out) {
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = (packed[i / 8] >> (i % 8)) & 1 ? 1.0f : -1.0f;
  }
}

void ApplyMask(absl::Span<const uint8_t> packed, absl::Span<float> x) {
  for (size_t i = 0; i < x.size(); ++i) {
    if (!((packed[i / 8] >> (i % 8)) & 1)) x[i] = 0.0f;
  }
}

}  // namespace fedge
