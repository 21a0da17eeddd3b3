#include "models/data/local_data.h"

#include <ATen/ATen.h>
#include <sys/stat.h>
#include <zlib.h>

// clang-format off
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  ::mkdir(path.c_str(), 0755);
  return path;
}

void WriteBytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<char> Idx(std::vector<uint32_t> dims, const std::vector<uint8_t>& data) {
  std::vector<char> out;
  auto put = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>(v >> s));
  };
  put(0x00000800u | static_cast<uint32_t>(dims.size()));
  for (uint32_t d : dims) put(d);
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void WriteGzip(const std::string& path, const std::vector<char>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
}

// Channels-last pixels of a width x height image with `channels` channels.
void WritePng(const std::string& path, int width, int height, int channels, uint8_t value) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  image.width = width;
  image.height = height;
  image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  std::vector<uint8_t> pixels(static_cast<size_t>(width) * height * channels);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(value + i % channels);
  ASSERT_TRUE(png_image_write_to_file(&image, path.c_str(), 0, pixels.data(), 0, nullptr))
      << image.message;
}

void WriteJpeg(const std::string& path, int width, int height, uint8_t value) {
  jpeg_compress_struct info;
  jpeg_error_mgr error;
  info.err = jpeg_std_error(&error);
  jpeg_create_compress(&info);
  FILE* f = std::fopen(path.c_str(), "wb");
  jpeg_stdio_dest(&info, f);
  info.image_width = width;
  info.image_height = height;
  info.input_components = 1;
  info.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, 100, TRUE);
  jpeg_start_compress(&info, TRUE);
  std::vector<uint8_t> row(width, value);
  while (info.next_scanline < info.image_height) {
    JSAMPROW rows[1] = {row.data()};
    jpeg_write_scanlines(&info, rows, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  std::fclose(f);
}

std::string ErrorOf(const std::string& path, LocalDataOptions options = {}) {
  absl::StatusOr<LocalData> data = LoadLocalData(path, options);
  return data.ok() ? "OK" : std::string(data.status().message());
}

TEST(LocalDataTest, ReadsAnIdxPairPlainOrGzipAsUint8WithAHeldOutShare) {
  const std::string dir = TempDir("idx_pair");
  std::vector<uint8_t> pixels(20 * 4 * 5), labels(20);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<uint8_t>(i % 3);
  WriteBytes(dir + "/images.idx", Idx({20, 4, 5}, pixels));
  WriteGzip(dir + "/labels.idx.gz", Idx({20}, labels));
  absl::StatusOr<LocalData> data =
      LoadLocalData(dir + "/images.idx," + dir + "/labels.idx.gz", {0.1, 1, -1});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->train.size(), 18);
  EXPECT_EQ(data->held_out.size(), 2);
  EXPECT_EQ(data->train.images.scalar_type(), at::kByte);
  EXPECT_EQ(data->train.channels(), 1);
  EXPECT_EQ(data->train.height(), 4);
  EXPECT_EQ(data->train.width(), 5);
  EXPECT_EQ(data->train.num_classes, 3);
  // Per batch: pixel / 255 mapped to [-1, 1].
  const at::Tensor batch = data->train.Range(0, 1);
  EXPECT_EQ(batch.scalar_type(), at::kFloat);
  const float pixel = data->train.images[0][0][0][0].item<uint8_t>();
  EXPECT_NEAR(batch[0][0][0][0].item<float>(), pixel / 127.5f - 1.0f, 1e-5f);
  // Every sample lands in exactly one of the two shares.
  EXPECT_EQ(data->train.labels.sum().item<int64_t>() + data->held_out.labels.sum().item<int64_t>(),
            19);  // 0+1+2 repeated: 6 x 3 + 0 + 1
  // The same pair found in a directory.
  absl::StatusOr<LocalData> by_dir = LoadLocalData(dir, {0.1, 1, -1});
  ASSERT_TRUE(by_dir.ok()) << by_dir.status();
  EXPECT_TRUE(at::equal(by_dir->train.images, data->train.images));
}

TEST(LocalDataTest, ColourIdxIsChannelsLastOnDisk) {
  const std::string dir = TempDir("idx_colour");
  // Two 1x2 RGB images: pixel p, channel c = 10 p + c (+ 100 for the second).
  std::vector<uint8_t> pixels = {0, 1, 2, 10, 11, 12, 100, 101, 102, 110, 111, 112};
  WriteBytes(dir + "/img.idx", Idx({2, 1, 2, 3}, pixels));
  WriteBytes(dir + "/lab.idx", Idx({2}, {0, 1}));
  absl::StatusOr<LocalData> data = LoadLocalData(dir + "/img.idx," + dir + "/lab.idx", {0, 1, -1});
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->train.channels(), 3);
  EXPECT_EQ(data->train.images[0][1][0][1].item<uint8_t>(), 11);
  EXPECT_EQ(data->train.images[1][2][0][0].item<uint8_t>(), 102);
}

TEST(LocalDataTest, IdxErrorsNameTheFile) {
  const std::string dir = TempDir("idx_bad");
  WriteBytes(dir + "/img.idx", Idx({3, 2, 2}, std::vector<uint8_t>(12, 1)));
  WriteBytes(dir + "/lab.idx", Idx({2}, {0, 1}));
  EXPECT_THAT(ErrorOf(dir + "/img.idx," + dir + "/lab.idx"), HasSubstr("holds 3 images but"));
  WriteBytes(dir + "/short.idx", Idx({3, 2, 2}, std::vector<uint8_t>(5, 1)));
  EXPECT_THAT(ErrorOf(dir + "/short.idx," + dir + "/lab.idx"), HasSubstr("short.idx: truncated"));
  WriteBytes(dir + "/empty.idx", {});
  EXPECT_THAT(ErrorOf(dir + "/empty.idx," + dir + "/lab.idx"), HasSubstr("empty.idx"));
  EXPECT_THAT(ErrorOf(dir + "/missing.idx," + dir + "/lab.idx"), HasSubstr("missing.idx"));
  EXPECT_THAT(ErrorOf(dir + "/img.idx"), HasSubstr("is a file"));
  EXPECT_THAT(ErrorOf(dir), HasSubstr("IDX image and"));
  EXPECT_THAT(ErrorOf(dir + "/nowhere"), HasSubstr("nowhere"));
}

TEST(LocalDataTest, ReadsClassFoldersOfPngAndJpeg) {
  const std::string dir = TempDir("folders");
  ::mkdir((dir + "/boots").c_str(), 0755);
  ::mkdir((dir + "/apples").c_str(), 0755);
  for (int i = 0; i < 3; ++i) WritePng(dir + "/apples/a" + std::to_string(i) + ".png", 6, 4, 1, 40);
  for (int i = 0; i < 2; ++i) WriteJpeg(dir + "/boots/b" + std::to_string(i) + ".JPG", 6, 4, 200);
  WriteBytes(dir + "/boots/notes.txt", {'x'});  // not an image: skipped
  absl::StatusOr<LocalData> data = LoadLocalData(dir, {0, 1, -1});
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_THAT(data->class_names, ::testing::ElementsAre("apples", "boots"));
  ASSERT_EQ(data->train.size(), 5);
  EXPECT_EQ(data->train.num_classes, 2);
  EXPECT_EQ(data->train.height(), 4);
  EXPECT_EQ(data->train.width(), 6);
  EXPECT_EQ(data->train.labels.sum().item<int64_t>(), 2);
  // Sorted folders, sorted files: the apples first, then the boots.
  EXPECT_EQ(data->train.images[0][0][2][3].item<uint8_t>(), 40);
  EXPECT_NEAR(data->train.images[4][0][2][3].item<uint8_t>(), 200, 2);  // JPEG rounding
  EXPECT_TRUE(CheckInput(data->train, {1, 4, 6}, 2, dir).ok());
  EXPECT_THAT(std::string(CheckInput(data->train, {1, 28, 28}, 2, dir).message()),
              HasSubstr("images are 1x4x6 (channels x height x width), the model takes 1x28x28"));
  EXPECT_THAT(std::string(CheckInput(data->train, {1, 4, 6}, 1, dir).message()),
              HasSubstr("label 1 is outside the model's [0, 1)"));
}

TEST(LocalDataTest, FolderErrorsNameTheFile) {
  const std::string dir = TempDir("folders_bad");
  EXPECT_THAT(ErrorOf(dir), HasSubstr("no class subfolders"));
  ::mkdir((dir + "/a").c_str(), 0755);
  ::mkdir((dir + "/b").c_str(), 0755);
  WritePng(dir + "/a/one.png", 4, 4, 1, 1);
  EXPECT_THAT(ErrorOf(dir), HasSubstr("/b: no PNG or JPEG images"));
  WritePng(dir + "/b/colour.png", 4, 4, 3, 1);
  EXPECT_THAT(ErrorOf(dir), HasSubstr("colour.png: 3x4x4 (channels x height x width) unlike"));
  std::remove((dir + "/b/colour.png").c_str());
  // A PNG cut short, a JPEG cut short, and a file that is neither.
  WritePng(dir + "/b/whole.png", 4, 4, 1, 1);
  std::ifstream in(dir + "/b/whole.png", std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  bytes.resize(bytes.size() / 2);
  std::remove((dir + "/b/whole.png").c_str());
  WriteBytes(dir + "/b/cut.png", bytes);
  EXPECT_THAT(ErrorOf(dir), HasSubstr("cut.png: damaged or unreadable PNG"));
  std::remove((dir + "/b/cut.png").c_str());
  WriteJpeg(dir + "/b/whole.jpg", 16, 16, 9);
  std::ifstream jin(dir + "/b/whole.jpg", std::ios::binary);
  std::vector<char> jbytes((std::istreambuf_iterator<char>(jin)), {});
  jbytes.resize(jbytes.size() / 2);
  std::remove((dir + "/b/whole.jpg").c_str());
  WriteBytes(dir + "/b/cut.jpg", jbytes);
  EXPECT_THAT(ErrorOf(dir), HasSubstr("cut.jpg: damaged"));
  std::remove((dir + "/b/cut.jpg").c_str());
  WriteBytes(dir + "/b/fake.png", {'h', 'e', 'l', 'l', 'o', '!', '!', '!', '!'});
  EXPECT_THAT(ErrorOf(dir), HasSubstr("fake.png: neither a PNG nor a JPEG"));
  WriteBytes(dir + "/b/fake.png", {});
  EXPECT_THAT(ErrorOf(dir), HasSubstr("fake.png: empty file"));
  EXPECT_THAT(ErrorOf(dir, {1.5, 1, -1}), HasSubstr("held-out share"));
}

}  // namespace
}  // namespace fedge
