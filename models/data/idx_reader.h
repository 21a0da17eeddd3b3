#ifndef FEDGE_MODELS_IDX_READER_H_
#define FEDGE_MODELS_IDX_READER_H_

// Reader for the IDX files of MNIST-style datasets (as Debian's
// dataset-fashion-mnist installs them, gzip-compressed or plain): a big-endian
// header (magic 0x0000080D where D is the number of dimensions, unsigned byte
// data), the dimensions, then the data. Images are N x H x W (one channel) or
// N x H x W x C (channels last, as colour IDX files store them). Every failure names the file and
// what was wrong: missing, not gzip/IDX, wrong magic, truncated, trailing
// bytes, or too large. Free of LibTorch; thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge {

struct IdxImages {
  int64_t count = 0;
  int channels = 1;
  int rows = 0;
  int cols = 0;
  std::vector<uint8_t> pixels;  // count x channels x rows x cols
};

// Refuses files whose decompressed size exceeds this, so a corrupt or
// hostile file cannot exhaust memory.
inline constexpr int64_t kMaxIdxBytes = int64_t{1} << 30;

absl::StatusOr<IdxImages> ReadIdxImages(const std::string& path);
absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path);

}  // namespace fedge

#endif  // FEDGE_MODELS_IDX_READER_H_
