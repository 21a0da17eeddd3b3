#include "models/data/idx_reader.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status/status_macros.h"

namespace fedge {
namespace {

// Reads a whole file through zlib, which passes plain files through as-is.
absl::StatusOr<std::vector<uint8_t>> ReadMaybeGzip(const std::string& path) {
  gzFile file = gzopen(path.c_str(), "rb");
  if (file == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  std::vector<uint8_t> bytes;
  uint8_t chunk[1 << 16];
  while (true) {
    const int n = gzread(file, chunk, sizeof(chunk));
    if (n < 0) {
      int code = 0;
      const std::string message = gzerror(file, &code);
      gzclose(file);
      return absl::DataLossError(
          absl::StrCat(path, ": corrupt gzip stream: ", message));
    }
    if (n == 0) break;
    if (static_cast<int64_t>(bytes.size()) + n > kMaxIdxBytes) {
      gzclose(file);
      return absl::ResourceExhaustedError(absl::StrCat(
          path, ": larger than ", kMaxIdxBytes, " bytes decompressed"));
    }
    bytes.insert(bytes.end(), chunk, chunk + n);
  }
  // A gzip stream cut short reads as a clean end of file in some zlib
  // versions; gzclose_r reports it.
  const int close_code = gzclose(file);
  if (close_code != Z_OK) {
    return absl::DataLossError(absl::StrCat(
        path, ": gzip stream is truncated or corrupt (zlib code ", close_code,
        ")"));
  }
  return bytes;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Parses the header of an unsigned-byte IDX file with `dims` dimensions and
// checks that the data that follows has exactly the size they imply.
absl::StatusOr<std::vector<uint32_t>> ParseHeader(
    const std::string& path, const std::vector<uint8_t>& bytes, int dims) {
  if (bytes.size() < 4) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated: ", bytes.size(), " bytes, not even an IDX magic"));
  }
  const uint32_t magic = BigEndian32(bytes.data());
  const uint32_t want = 0x00000800u | static_cast<uint32_t>(dims);
  if (magic != want) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: not an unsigned-byte IDX file with %d dimensions: magic 0x%08x, "
        "expected 0x%08x",
        path, dims, magic, want));
  }
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (bytes.size() < header) {
    return absl::DataLossError(absl::StrCat(
        path, ": truncated: ", bytes.size(), " bytes, the IDX header needs ",
        header));
  }
  std::vector<uint32_t> shape(dims);
  uint64_t elements = 1;
  for (int i = 0; i < dims; ++i) {
    shape[i] = BigEndian32(bytes.data() + 4 + 4 * i);
    elements *= shape[i];
    if (elements > static_cast<uint64_t>(kMaxIdxBytes)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": dimensions claim more than ", kMaxIdxBytes,
                       " bytes of data"));
    }
  }
  const uint64_t have = bytes.size() - header;
  if (have < elements) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: header says ",
                                            elements, " data bytes, file has ",
                                            have));
  }
  if (have > elements) {
    return absl::DataLossError(absl::StrCat(path, ": ", have - elements,
                                            " unexpected bytes after the data"));
  }
  return shape;
}

}  // namespace

absl::StatusOr<IdxImages> ReadIdxImages(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadMaybeGzip(path));
  // Three dimensions (N x H x W) or four (N x H x W x C); the magic says.
  const int dims = bytes.size() >= 4 && bytes[3] == 4 ? 4 : 3;
  ASSIGN_OR_RETURN(std::vector<uint32_t> shape, ParseHeader(path, bytes, dims));
  if (shape[1] == 0 || shape[2] == 0 || shape[1] > 4096 || shape[2] > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": implausible image size ", shape[1], "x", shape[2]));
  }
  const uint32_t channels = dims == 4 ? shape[3] : 1;
  if (channels == 0 || channels > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": implausible channel count ", channels));
  }
  IdxImages images;
  images.count = shape[0];
  images.channels = static_cast<int>(channels);
  images.rows = static_cast<int>(shape[1]);
  images.cols = static_cast<int>(shape[2]);
  const size_t header = 4 + 4 * static_cast<size_t>(dims);
  if (channels == 1) {
    images.pixels.assign(bytes.begin() + header, bytes.end());
    return images;
  }
  // Channels last on disk, channels first in memory.
  const size_t plane = static_cast<size_t>(images.rows) * images.cols;
  images.pixels.resize(bytes.size() - header);
  const uint8_t* src = bytes.data() + header;
  for (int64_t n = 0; n < images.count; ++n) {
    uint8_t* dst = images.pixels.data() + n * plane * channels;
    const uint8_t* in = src + n * plane * channels;
    for (size_t p = 0; p < plane; ++p) {
      for (uint32_t c = 0; c < channels; ++c) dst[c * plane + p] = in[p * channels + c];
    }
  }
  return images;
}

absl::StatusOr<std::vector<uint8_t>> ReadIdxLabels(const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, ReadMaybeGzip(path));
  RETURN_IF_ERROR(ParseHeader(path, bytes, 1).status());
  return std::vector<uint8_t>(bytes.begin() + 8, bytes.end());
}

}  // namespace fedge
