#include "models/data/idx_reader.h"

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

const std::string kDir = "/usr/share/datasets/fashion-mnist";

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

std::vector<char> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A plain (uncompressed) IDX file: magic, dims, data.
std::vector<char> PlainIdx(uint32_t magic, std::vector<uint32_t> dims,
                           size_t data_bytes) {
  std::vector<char> out;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>(v >> s));
  };
  put(magic);
  for (uint32_t d : dims) put(d);
  out.insert(out.end(), data_bytes, 7);
  return out;
}

TEST(IdxReaderTest, ReadsRealFashionMnistTestSplit) {
  absl::StatusOr<IdxImages> images =
      ReadIdxImages(kDir + "/t10k-images-idx3-ubyte.gz");
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->count, 10000);
  EXPECT_EQ(images->rows, 28);
  EXPECT_EQ(images->cols, 28);
  EXPECT_EQ(images->pixels.size(), 10000u * 784);
  absl::StatusOr<std::vector<uint8_t>> labels =
      ReadIdxLabels(kDir + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_TRUE(labels.ok()) << labels.status();
  ASSERT_EQ(labels->size(), 10000u);
  // Fashion-MNIST's test set is balanced: 1000 of each class.
  std::vector<int> counts(10);
  for (uint8_t label : *labels) {
    ASSERT_LT(label, 10);
    ++counts[label];
  }
  for (int c : counts) EXPECT_EQ(c, 1000);
}

TEST(IdxReaderTest, MissingFileIsNotFoundNamingIt) {
  const absl::StatusOr<IdxImages> images = ReadIdxImages("/no/such/file.gz");
  EXPECT_EQ(images.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("/no/such/file.gz"));
}

TEST(IdxReaderTest, TruncatedGzipIsDataLoss) {
  std::vector<char> bytes = ReadAll(kDir + "/t10k-labels-idx1-ubyte.gz");
  ASSERT_GT(bytes.size(), 100u);
  bytes.resize(bytes.size() / 2);
  const std::string path = TempPath("truncated.gz");
  WriteAll(path, bytes);
  const auto labels = ReadIdxLabels(path);
  EXPECT_EQ(labels.status().code(), absl::StatusCode::kDataLoss)
      << labels.status();
  EXPECT_THAT(std::string(labels.status().message()), HasSubstr(path));
}

TEST(IdxReaderTest, CorruptGzipBodyIsDataLoss) {
  std::vector<char> bytes = ReadAll(kDir + "/t10k-labels-idx1-ubyte.gz");
  for (size_t i = 40; i < 200 && i < bytes.size(); ++i) bytes[i] ^= 0x5A;
  const std::string path = TempPath("corrupt.gz");
  WriteAll(path, bytes);
  EXPECT_EQ(ReadIdxLabels(path).status().code(), absl::StatusCode::kDataLoss);
}

TEST(IdxReaderTest, WrongMagicIsInvalidArgument) {
  const std::string path = TempPath("labels_as_images.idx");
  WriteAll(path, PlainIdx(0x00000801, {5}, 5));
  const auto images = ReadIdxImages(path);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("magic"));
  // And plain garbage that is not even IDX.
  WriteAll(path, std::vector<char>(64, 'x'));
  EXPECT_EQ(ReadIdxLabels(path).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IdxReaderTest, LyingDimensionsAreCaught) {
  const std::string path = TempPath("lying.idx");
  WriteAll(path, PlainIdx(0x00000803, {10, 28, 28}, 9 * 784));
  auto images = ReadIdxImages(path);
  EXPECT_EQ(images.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(images.status().message()), HasSubstr("truncated"));

  WriteAll(path, PlainIdx(0x00000801, {3}, 4));
  EXPECT_THAT(std::string(ReadIdxLabels(path).status().message()),
              HasSubstr("unexpected bytes"));

  WriteAll(path, PlainIdx(0x00000803, {0xFFFFFFFF, 0xFFFF, 0xFFFF}, 0));
  EXPECT_FALSE(ReadIdxImages(path).ok());

  WriteAll(path, std::vector<char>{0, 0, 8});
  EXPECT_EQ(ReadIdxLabels(path).status().code(), absl::StatusCode::kDataLoss);
}

TEST(IdxReaderTest, PlainFilesReadToo) {
  const std::string path = TempPath("plain.idx");
  WriteAll(path, PlainIdx(0x00000803, {2, 3, 4}, 24));
  const auto images = ReadIdxImages(path);
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->count, 2);
  EXPECT_EQ(images->rows, 3);
  EXPECT_EQ(images->cols, 4);
  EXPECT_EQ(images->pixels[23], 7);
}

}  // namespace
}  // namespace fedge
