#ifndef FEDGE_COMMON_FILE_UTIL_H_
#define FEDGE_COMMON_FILE_UTIL_H_

// Whole-file I/O with clear errors, through Env::Default() (common/env for
// the seam tests use). Writes are atomic: a temporary file in the same
// directory, fsync, rename, fsync of the directory, so a crash leaves either
// the old file or the new one, never a torn mix. Thread-compatible.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedge {

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents);

// Fails with kNotFound if missing, kResourceExhausted if larger than
// `max_bytes`.
absl::StatusOr<std::string> ReadFileToString(const std::string& path,
                                             int64_t max_bytes);

// Creates `path` and any missing parents (like mkdir -p); an existing
// directory is fine.
absl::Status CreateDirectories(const std::string& path);

// Checks that `path` is an existing directory this process can write files
// in, by writing and removing a probe file the way WriteFileAtomically does.
absl::Status CheckWritableDirectory(const std::string& path);

// 64-bit FNV-1a: a cheap integrity check for our own file formats.
uint64_t Fingerprint64(absl::string_view data);

}  // namespace fedge

#endif  // FEDGE_COMMON_FILE_UTIL_H_
