#ifndef FEDGE_MODELS_IMAGE_DECODE_H_
#define FEDGE_MODELS_IMAGE_DECODE_H_

// PNG (libpng) and JPEG (libjpeg-turbo) files decoded to 8-bit pixels,
// channels first. Grey images have one channel, colour ones three, and an
// alpha channel adds one. A damaged or truncated file is an error naming it,
// never a crash or an exit. Free of LibTorch; thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge {

struct DecodedImage {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::vector<uint8_t> pixels;  // channels x height x width
};

// Refuses images with more pixels than this (a hostile header).
inline constexpr int64_t kMaxImagePixels = int64_t{1} << 24;

// By the file's signature, not its name.
absl::StatusOr<DecodedImage> DecodeImageFile(const std::string& path);

}  // namespace fedge

#endif  // FEDGE_MODELS_IMAGE_DECODE_H_
