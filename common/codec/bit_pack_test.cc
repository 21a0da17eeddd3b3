#include "common/codec/bit_pack.h"

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::vector<uint8_t> Pack(const std::vector<uint8_t>& codes, int bits) {
  std::vector<uint8_t> out(PackedBytes(codes.size(), bits), 0xAA);
  const absl::Status status = PackBits(codes, bits, absl::MakeSpan(out));
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

TEST(BitPackTest, PackedBytesRoundsUp) {
  EXPECT_EQ(PackedBytes(0, 1), 0u);
  EXPECT_EQ(PackedBytes(1, 1), 1u);
  EXPECT_EQ(PackedBytes(8, 1), 1u);
  EXPECT_EQ(PackedBytes(9, 1), 2u);
  EXPECT_EQ(PackedBytes(3, 3), 2u);
  EXPECT_EQ(PackedBytes(8, 3), 3u);
  EXPECT_EQ(PackedBytes(5, 8), 5u);
  EXPECT_EQ(PackedBytes(1000001, 5), 625001u);
}

// Expected bytes below are worked out by hand from the layout in bit_pack.h.
TEST(BitPackTest, OneBitIsLsbFirst) {
  EXPECT_THAT(Pack({1, 0, 1, 1, 0, 0, 0, 0, 1}, 1),
              ElementsAreArray({0x0D, 0x01}));
}

TEST(BitPackTest, ThreeBitsStraddleBytes) {
  // 101 | 100 | 111 (LSB first) -> 0b11001101, 0b00000001.
  EXPECT_THAT(Pack({5, 1, 7}, 3), ElementsAreArray({0xCD, 0x01}));
}

TEST(BitPackTest, FourBitsAreNibbles) {
  EXPECT_THAT(Pack({0xA, 0x3, 0xF}, 4), ElementsAreArray({0x3A, 0x0F}));
}

TEST(BitPackTest, FiveBits) {
  // 31 in bits 0-4, 0 in bits 5-9, 17 = 0b10001 in bits 10-14.
  EXPECT_THAT(Pack({31, 0, 17}, 5), ElementsAreArray({0x1F, 0x44}));
}

TEST(BitPackTest, SevenBits) {
  EXPECT_THAT(Pack({0x7F, 0x01}, 7), ElementsAreArray({0xFF, 0x00}));
  EXPECT_THAT(Pack({0x00, 0x7F}, 7), ElementsAreArray({0x80, 0x3F}));
}

TEST(BitPackTest, EightBitsIsIdentity) {
  EXPECT_THAT(Pack({0, 255, 17, 128}, 8),
              ElementsAreArray({0, 255, 17, 128}));
}

TEST(BitPackTest, RoundTripsEveryWidthAndOddLengths) {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
    for (size_t n : {0, 1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 31, 63, 64, 65,
                     127, 1001}) {
      std::vector<uint8_t> codes(n);
      for (auto& c : codes) c = static_cast<uint8_t>(code(rng));
      const std::vector<uint8_t> packed = Pack(codes, bits);
      ASSERT_EQ(packed.size(), PackedBytes(n, bits));
      std::vector<uint8_t> back(n, 0xEE);
      const absl::Status status =
          UnpackBits(packed, bits, absl::MakeSpan(back));
      ASSERT_TRUE(status.ok()) << "bits=" << bits << " n=" << n << ": "
                               << status;
      EXPECT_EQ(back, codes) << "bits=" << bits << " n=" << n;
    }
  }
}

TEST(BitPackTest, AllOnesFillExactlyTheStream) {
  for (int bits = 1; bits <= 8; ++bits) {
    const std::vector<uint8_t> codes(11, static_cast<uint8_t>((1 << bits) - 1));
    const std::vector<uint8_t> packed = Pack(codes, bits);
    const int total_bits = 11 * bits;
    for (size_t i = 0; i + 1 < packed.size(); ++i) EXPECT_EQ(packed[i], 0xFF);
    const int tail_bits = total_bits - 8 * (static_cast<int>(packed.size()) - 1);
    EXPECT_EQ(packed.back(), (1 << tail_bits) - 1) << "bits=" << bits;
  }
}

TEST(BitPackTest, RejectsBadWidth) {
  std::vector<uint8_t> out(4);
  for (int bits : {0, 9, -1}) {
    const absl::Status status = PackBits({1, 0}, bits, absl::MakeSpan(out));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(status.message()), HasSubstr("bit width"));
    EXPECT_EQ(UnpackBits(out, bits, absl::MakeSpan(out)).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(BitPackTest, RejectsCodeThatDoesNotFit) {
  std::vector<uint8_t> out(PackedBytes(3, 2));
  const absl::Status status = PackBits({3, 4, 0}, 2, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("index 1"));
}

TEST(BitPackTest, RejectsWrongBufferSizes) {
  std::vector<uint8_t> small(1);
  EXPECT_EQ(PackBits({1, 2, 3}, 3, absl::MakeSpan(small)).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<uint8_t> packed = {0xCD, 0x01, 0x00};
  std::vector<uint8_t> codes(3);
  const absl::Status status = UnpackBits(packed, 3, absl::MakeSpan(codes));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("need 2"));
}

TEST(BitPackTest, UnpackDetectsDirtyPadding) {
  std::vector<uint8_t> codes(3);
  const std::vector<uint8_t> dirty = {0xCD, 0x81};
  EXPECT_EQ(UnpackBits(dirty, 3, absl::MakeSpan(codes)).code(),
            absl::StatusCode::kDataLoss);
  const std::vector<uint8_t> clean = {0xCD, 0x01};
  ASSERT_TRUE(UnpackBits(clean, 3, absl::MakeSpan(codes)).ok());
  EXPECT_THAT(codes, ElementsAreArray({5, 1, 7}));
}

TEST(BitPackTest, SignsMatchGenericPacking) {
  const std::vector<float> x = {0.5f, -1.0f, 0.0f, 2.0f, -0.0f, -3.0f,
                                1e-9f, -1e-9f, 7.0f, -7.0f, 0.25f};
  std::vector<uint8_t> fast(PackedBytes(x.size(), 1));
  PackSigns(x, absl::MakeSpan(fast));
  // x >= 0: 1 0 1 1 1 0 1 0 | 1 0 1; -0.0f >= 0 holds.
  EXPECT_THAT(fast, ElementsAreArray({0x5D, 0x05}));
  std::vector<float> back(x.size());
  UnpackSigns(fast, absl::MakeSpan(back));
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(back[i], x[i] >= 0.0f ? 1.0f : -1.0f) << i;
  }
}

TEST(BitPackTest, AbsLeqMaskAndApply) {
  const std::vector<float> x = {0.5f, -1.0f, 1.0f, 1.5f, -2.0f, 0.0f,
                                -0.999f, 1.001f, 3.0f};
  std::vector<uint8_t> mask(PackedBytes(x.size(), 1));
  PackAbsLeq(x, 1.0f, absl::MakeSpan(mask));
  // |x| <= 1: 1 1 1 0 0 1 1 0 | 0
  EXPECT_THAT(mask, ElementsAreArray({0x67, 0x00}));
  std::vector<float> grad(x.size(), 2.0f);
  ApplyMask(mask, absl::MakeSpan(grad));
  EXPECT_THAT(grad, ElementsAreArray({2.0f, 2.0f, 2.0f, 0.0f, 0.0f, 2.0f,
                                      2.0f, 0.0f, 0.0f}));
}

TEST(BitPackTest, InRangeMask) {
  const std::vector<float> x = {0.0f, -0.1f, 1.5f, 1.6f, 0.7f, -2.0f, 1.0f, 0.2f, 1.55f};
  std::vector<uint8_t> mask(PackedBytes(x.size(), 1));
  PackInRange(x, 0.0f, 1.55f, absl::MakeSpan(mask));
  // in [0, 1.55]: 1 0 1 0 1 0 1 1 | 1
  EXPECT_THAT(mask, ElementsAreArray({0xD5, 0x01}));
}

TEST(BitWriterTest, MixedWidthsOneStreamAndAlignedSlices) {
  std::string out;
  BitWriter w(&out);
  ASSERT_TRUE(w.Put(5, 3).ok());
  ASSERT_TRUE(w.Put(1, 1).ok());
  ASSERT_TRUE(w.Put(2, 2).ok());
  w.Flush();
  EXPECT_EQ(out, std::string("\x2D"));  // 0b00'10'1'101
  EXPECT_FALSE(w.Put(4, 2).ok());  // does not fit
  EXPECT_FALSE(w.Put(0, 9).ok());
  // Aligned slices give exactly PackBits' bytes, slice by slice.
  const std::vector<uint8_t> a = {5, 1, 7}, b = {1, 0, 1, 1, 0};
  std::string aligned;
  BitWriter slices(&aligned);
  for (uint8_t c : a) ASSERT_TRUE(slices.Put(c, 3).ok());
  slices.AlignToByte();
  for (uint8_t c : b) ASSERT_TRUE(slices.Put(c, 1).ok());
  slices.Flush();
  std::vector<uint8_t> pa(PackedBytes(a.size(), 3)), pb(PackedBytes(b.size(), 1));
  ASSERT_TRUE(PackBits(a, 3, absl::MakeSpan(pa)).ok());
  ASSERT_TRUE(PackBits(b, 1, absl::MakeSpan(pb)).ok());
  std::string expected(pa.begin(), pa.end());
  expected.append(pb.begin(), pb.end());
  EXPECT_EQ(aligned, expected);
}

TEST(BitReaderTest, ReadsBackEveryWidthAndStopsAtTheEnd) {
  std::string out;
  BitWriter w(&out);
  std::vector<std::pair<uint32_t, int>> written;
  for (int bits = 1; bits <= 8; ++bits) {
    for (uint32_t code = 0; code < (1u << bits); code += 1 + bits) {
      ASSERT_TRUE(w.Put(code, bits).ok());
      written.emplace_back(code, bits);
    }
  }
  w.Flush();
  BitReader r(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
  for (const auto& [code, bits] : written) {
    uint32_t got = 99;
    ASSERT_TRUE(r.Get(bits, &got));
    EXPECT_EQ(got, code) << bits;
  }
  uint32_t extra = 0;
  EXPECT_FALSE(r.Get(8, &extra));
}

}  // namespace
}  // namespace fedge
