// libFuzzer target for the message decoder. The input is split into frames:
// each frame is a 2-byte little-endian length followed by that many bytes;
// a short or missing length ends the input. Whatever comes in, DecodeMessage
// must return a status, never crash, hang or read out of bounds, and what it
// accepts must re-encode.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/wire/wire_codec.h"

std::vector<std::string> SplitFrames(const uint8_t* data, size_t size) {
  std::vector<std::string> frames;
  size_t at = 0;
  while (at + 2 <= size && frames.size() < 64) {
    const size_t length = data[at] | (size_t{data[at + 1]} << 8);
    at += 2;
    const size_t take = length < size - at ? length : size - at;
    frames.emplace_back(reinterpret_cast<const char*>(data + at), take);
    at += take;
  }
  return frames;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string> frames = SplitFrames(data, size);
  absl::StatusOr<fedge::Message> message = fedge::DecodeMessage(frames);
  if (message.ok()) {
    absl::StatusOr<std::vector<std::string>> again = fedge::EncodeMessage(*message);
    if (!again.ok()) __builtin_trap();  // accepted but not re-encodable
  }
  return 0;
}
