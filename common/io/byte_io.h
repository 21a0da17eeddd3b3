#ifndef FEDGE_COMMON_BYTE_IO_H_
#define FEDGE_COMMON_BYTE_IO_H_

// The little-endian records of the project's own files (checkpoints, the
// error-feedback residual, exported models) and their common envelope: an
// 8-byte magic, a 64-bit fingerprint of the body, then the body.
//
//   std::string body;
//   PutU64(&body, count);
//   RETURN_IF_ERROR(WriteFileAtomically(path, SealFile(kMagic, body)));
//
//   absl::string_view body;
//   if (OpenSealedFile(file, kMagic, &body) != SealCheck::kOk) ...
//   ByteReader in(body);
//   if (!in.U64(&count)) ...

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace fedge {

void PutU32(std::string* out, uint32_t v);
void PutU64(std::string* out, uint64_t v);

// Reads from the front of a view; every read fails (and consumes nothing)
// when too few bytes are left.
class ByteReader {
 public:
  explicit ByteReader(absl::string_view in) : in_(in) {}
  bool U8(uint8_t* v);
  bool U32(uint32_t* v);
  bool U64(uint64_t* v);
  bool Bytes(size_t n, absl::string_view* out);
  bool empty() const { return in_.empty(); }
  size_t size() const { return in_.size(); }

 private:
  absl::string_view in_;
};

// `magic` (8 bytes), the fingerprint of `body`, then `body`.
std::string SealFile(absl::string_view magic, absl::string_view body);

enum class SealCheck { kOk, kBadMagic, kBadChecksum };
// The body of a sealed file: kBadMagic when it does not start with `magic`,
// kBadChecksum when the fingerprint is missing or does not match (truncated
// or corrupt).
SealCheck OpenSealedFile(absl::string_view file, absl::string_view magic, absl::string_view* body);

}  // namespace fedge

#endif  // FEDGE_COMMON_BYTE_IO_H_
