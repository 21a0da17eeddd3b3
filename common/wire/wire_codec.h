#ifndef FEDGE_COMMON_WIRE_CODEC_H_
#define FEDGE_COMMON_WIRE_CODEC_H_

// Messages <-> ZeroMQ frames. Frame 0 is a Cap'n Proto envelope
// (common/wire.capnp); each tensor's bytes follow in a frame of their own,
// named by index from the envelope, so bulk data needs no copy through Cap'n
// Proto and is not subject to its traversal limit.
//
// Decoding trusts nothing: the envelope is copied to 8-byte-aligned memory
// and read with explicit ReaderOptions limits, and every field is checked
// (version, ids, enums, ranges, NaN/Inf, each tensor's shape against its
// payload frame, every payload frame used exactly once). A failure is a
// status saying what was wrong; it never throws or crashes.
//
//   ASSIGN_OR_RETURN(std::vector<std::string> frames, EncodeMessage(message));
//   ASSIGN_OR_RETURN(Message back, DecodeMessage(frames));
//
// Thread-safe (no shared state).

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/transport/transport.h"
#include "common/wire/messages.h"

namespace fedge {

// A tensor's bytes travel in payload frames of at most this size.
inline constexpr size_t kMaxPayloadFrameBytes = size_t{64} << 10;

struct WireLimits {
  size_t max_envelope_bytes = size_t{1} << 20;
  size_t max_tensors = 4096;
  size_t max_payload_frames = size_t{1} << 15;
  size_t max_total_payload_bytes = size_t{1} << 30;
  size_t max_text_bytes = 4096;
};

// Checks a message's fields as DecodeMessage would (encoders call it too, so
// a bad message is caught at its source); `tensors_with_payload` must equal
// the message's tensor count.
absl::Status ValidateMessage(const Message& message, size_t tensors_with_payload,
                             const WireLimits& limits = WireLimits());

// Every frame copied: the envelope, then each tensor's payload.
absl::StatusOr<std::vector<std::string>> EncodeMessage(const Message& message);

// The same message with the payloads of tensors that have a shared_payload
// left shared: `frames` holds the envelope and the copied payloads, and the
// shared ones follow them on the wire, in `shared_frames` (the envelope
// names each by its index in frames + shared_frames).
struct EncodedMessage {
  std::vector<std::string> frames;
  std::vector<SharedFrame> shared_frames;
};
absl::StatusOr<EncodedMessage> EncodeMessageShared(const Message& message);

absl::StatusOr<Message> DecodeMessage(absl::Span<const std::string> frames,
                                      const WireLimits& limits = WireLimits());

}  // namespace fedge

#endif  // FEDGE_COMMON_WIRE_CODEC_H_
