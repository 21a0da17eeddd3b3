#include "common/io/byte_io.h"

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(ByteIoTest, IntegersAreLittleEndianAndReadsStopAtTheEnd) {
  std::string out;
  PutU32(&out, 0x04030201u);
  PutU64(&out, 0x0c0b0a0908070605ull);
  out.push_back('\x0d');
  ASSERT_EQ(out.size(), 13u);
  EXPECT_EQ(out[0], '\x01');
  EXPECT_EQ(out[11], '\x0c');
  ByteReader in(out);
  uint32_t a = 0;
  uint64_t b = 0;
  uint8_t c = 0;
  ASSERT_TRUE(in.U32(&a) && in.U64(&b) && in.U8(&c));
  EXPECT_EQ(a, 0x04030201u);
  EXPECT_EQ(b, 0x0c0b0a0908070605ull);
  EXPECT_EQ(c, 0x0d);
  EXPECT_TRUE(in.empty());
  EXPECT_FALSE(in.U8(&c));

  ByteReader short_in(absl::string_view("abc"));
  absl::string_view bytes;
  EXPECT_FALSE(short_in.U32(&a));
  EXPECT_EQ(short_in.size(), 3u);  // a failed read consumes nothing
  EXPECT_FALSE(short_in.Bytes(4, &bytes));
  ASSERT_TRUE(short_in.Bytes(3, &bytes));
  EXPECT_EQ(bytes, "abc");
}

TEST(ByteIoTest, SealedFilesOpenOnlyWhenIntact) {
  const std::string file = SealFile("FEDGEXX1", "the body");
  absl::string_view body;
  ASSERT_EQ(OpenSealedFile(file, "FEDGEXX1", &body), SealCheck::kOk);
  EXPECT_EQ(body, "the body");
  EXPECT_EQ(OpenSealedFile(file, "FEDGEYY1", &body), SealCheck::kBadMagic);
  EXPECT_EQ(OpenSealedFile("FEDG", "FEDGEXX1", &body), SealCheck::kBadMagic);
  std::string flipped = file;
  flipped.back() ^= 1;
  EXPECT_EQ(OpenSealedFile(flipped, "FEDGEXX1", &body), SealCheck::kBadChecksum);
  EXPECT_EQ(OpenSealedFile(file.substr(0, file.size() - 1), "FEDGEXX1", &body),
            SealCheck::kBadChecksum);
  EXPECT_EQ(OpenSealedFile(file.substr(0, 12), "FEDGEXX1", &body), SealCheck::kBadChecksum);
}

}  // namespace
}  // namespace fedge
