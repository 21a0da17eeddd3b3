#include "common/io/byte_io.h"

#include "common/io/file_util.h"

namespace fedge {

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

namespace {

template <typename T>
bool ReadLittleEndian(absl::string_view* in, T* v) {
  if (in->size() < sizeof(T)) return false;
  T out = 0;
  for (size_t i = 0; i < sizeof(T); ++i) out |= static_cast<T>(static_cast<uint8_t>((*in)[i])) << (8 * i);
  *v = out;
  in->remove_prefix(sizeof(T));
  return true;
}

}  // namespace

bool ByteReader::U8(uint8_t* v) { return ReadLittleEndian(&in_, v); }
bool ByteReader::U32(uint32_t* v) { return ReadLittleEndian(&in_, v); }
bool ByteReader::U64(uint64_t* v) { return ReadLittleEndian(&in_, v); }

bool ByteReader::Bytes(size_t n, absl::string_view* out) {
  if (in_.size() < n) return false;
  *out = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}

std::string SealFile(absl::string_view magic, absl::string_view body) {
  std::string file(magic);
  PutU64(&file, Fingerprint64(body));
  file.append(body.data(), body.size());
  return file;
}

SealCheck OpenSealedFile(absl::string_view file, absl::string_view magic, absl::string_view* body) {
  if (file.substr(0, magic.size()) != magic) return SealCheck::kBadMagic;
  ByteReader in(file.substr(magic.size()));
  uint64_t fingerprint = 0;
  absl::string_view rest;
  if (!in.U64(&fingerprint) || !in.Bytes(in.size(), &rest) || Fingerprint64(rest) != fingerprint) {
    return SealCheck::kBadChecksum;
  }
  *body = rest;
  return SealCheck::kOk;
}

}  // namespace fedge
