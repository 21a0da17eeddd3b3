#ifndef FEDGE_COMMON_BIT_PACK_H_
#define FEDGE_COMMON_BIT_PACK_H_

// Packing of small unsigned integer codes (1..8 bits each) into a dense
// little-endian bit stream: code i occupies stream bits [i*b, (i+1)*b), least
// significant bit first, and stream bit j is bit (j % 8) of byte j / 8. Unused
// high bits of the last byte are zero.
//
// Example, b = 3, codes {5, 1, 7}: stream bits 101 100 111 (LSB first), i.e.
// byte 0 = 0b11'001'101 = 0xCD, byte 1 = 0b0000000'1 = 0x01.
//
// Used for saved activations (1-bit signs, k-bit codes), STE masks, weight
// codes on the downlink and sign updates on the uplink. Plain functions on
// spans; thread-compatible.

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace fedge {

inline constexpr int kMinPackBits = 1;
inline constexpr int kMaxPackBits = 8;

// Bytes needed to hold `count` codes of `bits` bits: ceil(count * bits / 8).
// `bits` must be in [1, 8].
constexpr size_t PackedBytes(size_t count, int bits) {
  return (count * static_cast<size_t>(bits) + 7) / 8;
}

// Packs `codes` at `bits` bits each into `out`, which must hold exactly
// PackedBytes(codes.size(), bits) bytes. Fails with kInvalidArgument when
// `bits` is outside [1, 8], `out` has the wrong size, or a code does not fit
// in `bits` bits (the error names its index); `out` is then unspecified.
absl::Status PackBits(absl::Span<const uint8_t> codes, int bits,
                      absl::Span<uint8_t> out);

// Unpacks `out.size()` codes of `bits` bits from `packed`, which must hold
// exactly PackedBytes(out.size(), bits) bytes. Fails with kInvalidArgument on
// a bad width or size, and with kDataLoss when the padding bits of the last
// byte are not zero (a sign of a corrupted or mis-sized buffer).
absl::Status UnpackBits(absl::Span<const uint8_t> packed, int bits,
                        absl::Span<uint8_t> out);

// Codes of varying widths in one stream of the same layout: the one packer
// of mixed-precision weight codes, for the model file (one continuous
// stream across slices) and the wire's mixed shards (AlignToByte() after
// each slice, so each starts on a byte: the same bytes as PackBits per
// slice). Example: Put(5, 3), Put(1, 1), Put(2, 2) -> 0b00'10'1'101 = 0x2D.
//
//   std::string out;
//   BitWriter w(&out);
//   for (...) RETURN_IF_ERROR(w.Put(code, bits));
//   w.Flush();
class BitWriter {
 public:
  explicit BitWriter(std::string* out) : out_(out) {}
  // Fails with kInvalidArgument for `bits` outside [1, 8] or a code that
  // does not fit.
  absl::Status Put(uint32_t code, int bits);
  // Pads the current byte with zero bits.
  void AlignToByte();
  // Writes the last partial byte; call once, after the last Put.
  void Flush() { AlignToByte(); }

 private:
  std::string* out_;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

// Reads what BitWriter wrote.
class BitReader {
 public:
  explicit BitReader(absl::Span<const uint8_t> in) : in_(in) {}
  // False when the stream is exhausted.
  bool Get(int bits, uint32_t* code);
  void AlignToByte();

 private:
  absl::Span<const uint8_t> in_;
  size_t at_ = 0;
  uint64_t acc_ = 0;
  int filled_ = 0;
};

// 1-bit fast paths over floats, in the same layout as PackBits with b = 1.
// `out` must hold exactly PackedBytes(n, 1) bytes; padding bits are zero.

// Bit i = 1 where x[i] >= 0 (sign(0) = +1, as the binary layers use).
void PackSigns(absl::Span<const float> x, absl::Span<uint8_t> out);
// Bit i = 1 where |x[i]| <= limit: the straight-through estimator's mask.
void PackAbsLeq(absl::Span<const float> x, float limit,
                absl::Span<uint8_t> out);
// Bit i = 1 where lo <= x[i] <= hi.
void PackInRange(absl::Span<const float> x, float lo, float hi,
                 absl::Span<uint8_t> out);
// out[i] = bit i ? 1 : -1.
void UnpackSigns(absl::Span<const uint8_t> packed, absl::Span<float> out);
// out[i] = bit i ? x[i] : 0, in place: applies a packed mask to a gradient.
void ApplyMask(absl::Span<const uint8_t> packed, absl::Span<float> x);

}  // namespace fedge

#endif  // FEDGE_COMMON_BIT_PACK_H_
