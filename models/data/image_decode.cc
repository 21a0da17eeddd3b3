#include "models/data/image_decode.h"

// clang-format off
#include <cstdio>
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <csetjmp>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"

namespace fedge {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

absl::Status CheckSize(const std::string& path, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0 || width * height > kMaxImagePixels) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": implausible image size ", width, "x", height));
  }
  return absl::OkStatus();
}

absl::StatusOr<DecodedImage> DecodePng(const std::string& path) {
  png_image image;
  std::memset(&image, 0, sizeof(image));
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    return absl::DataLossError(absl::StrCat(path, ": damaged or unreadable PNG: ", image.message));
  }
  DecodedImage out;
  out.channels = (image.format & PNG_FORMAT_FLAG_COLOR ? 3 : 1) +
                 (image.format & PNG_FORMAT_FLAG_ALPHA ? 1 : 0);
  image.format = out.channels == 1   ? PNG_FORMAT_GRAY
                 : out.channels == 2 ? PNG_FORMAT_GA
                 : out.channels == 3 ? PNG_FORMAT_RGB
                                     : PNG_FORMAT_RGBA;
  if (absl::Status s = CheckSize(path, image.width, image.height); !s.ok()) {
    png_image_free(&image);
    return s;
  }
  out.height = static_cast<int>(image.height);
  out.width = static_cast<int>(image.width);
  std::vector<uint8_t> interleaved(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, interleaved.data(), 0, nullptr)) {
    const std::string message = image.message;
    png_image_free(&image);
    return absl::DataLossError(absl::StrCat(path, ": damaged or unreadable PNG: ", message));
  }
  const size_t plane = static_cast<size_t>(out.height) * out.width;
  out.pixels.resize(plane * out.channels);
  for (size_t p = 0; p < plane; ++p) {
    for (int c = 0; c < out.channels; ++c) out.pixels[c * plane + p] = interleaved[p * out.channels + c];
  }
  return out;
}

// libjpeg reports errors through a callback that must not return.
struct JpegError {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void OnJpegError(j_common_ptr info) {
  JpegError* error = reinterpret_cast<JpegError*>(info->err);
  (*info->err->format_message)(info, error->message);
  std::longjmp(error->jump, 1);
}

absl::StatusOr<DecodedImage> DecodeJpeg(const std::string& path) {
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  jpeg_decompress_struct info;
  JpegError error;
  info.err = jpeg_std_error(&error.base);
  error.base.error_exit = OnJpegError;
  // Warnings (a truncated file) are counted and reported below, not printed.
  error.base.output_message = [](j_common_ptr) {};
  error.message[0] = '\0';
  // Everything setjmp may return to is declared before it and not changed
  // between it and the longjmp but through pointers.
  DecodedImage out;
  std::vector<uint8_t> row;
  if (setjmp(error.jump)) {
    jpeg_destroy_decompress(&info);
    return absl::DataLossError(absl::StrCat(path, ": damaged JPEG: ", error.message));
  }
  jpeg_create_decompress(&info);
  jpeg_stdio_src(&info, file.get());
  jpeg_read_header(&info, TRUE);
  if (info.jpeg_color_space != JCS_GRAYSCALE) info.out_color_space = JCS_RGB;
  jpeg_start_decompress(&info);
  const int64_t width = info.output_width, height = info.output_height;
  if (width <= 0 || height <= 0 || width * height > kMaxImagePixels) {
    jpeg_destroy_decompress(&info);
    return CheckSize(path, width, height);
  }
  out.channels = info.output_components;
  out.height = static_cast<int>(height);
  out.width = static_cast<int>(width);
  const size_t plane = static_cast<size_t>(height) * width;
  out.pixels.resize(plane * out.channels);
  row.resize(static_cast<size_t>(width) * out.channels);
  while (info.output_scanline < info.output_height) {
    const size_t y = info.output_scanline;
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&info, rows, 1);
    for (int64_t x = 0; x < width; ++x) {
      for (int c = 0; c < out.channels; ++c) {
        out.pixels[c * plane + y * width + x] = row[x * out.channels + c];
      }
    }
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  // libjpeg pads a truncated file with a warning, not an error.
  if (error.base.num_warnings > 0) {
    return absl::DataLossError(absl::StrCat(path, ": damaged or truncated JPEG"));
  }
  return out;
}

}  // namespace

absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path) {
  std::unique_ptr<FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (file == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  unsigned char magic[8] = {};
  const size_t got = std::fread(magic, 1, sizeof(magic), file.get());
  file.reset();
  if (got == 0) return absl::DataLossError(absl::StrCat(path, ": empty file"));
  if (got == 8 && png_sig_cmp(magic, 0, 8) == 0) return DecodePng(path);
  if (got >= 3 && magic[0] == 0xFF && magic[1] == 0xD8 && magic[2] == 0xFF) return DecodeJpeg(path);
  return absl::InvalidArgumentError(absl::StrCat(path, ": neither a PNG nor a JPEG file"));
}

}  // namespace fedge
