#ifndef FEDGE_COMMON_ENV_ENV_H_
#define FEDGE_COMMON_ENV_ENV_H_

// The one seam between the system and the outside world's files and clock:
// checkpoints, model state, the error-feedback residual and the metrics'
// clock go through an Env passed in by whoever wires the program
// (Env::Default() in the binaries), so tests swap in a fake clock or a
// FaultyEnv (faulty_env.h) that fails the next write, fsync or rename,
// fills the disk, or tears a write in half.
//
//   RETURN_IF_ERROR(WriteFileAtomically(env, path, bytes));  // all or nothing
//   ASSIGN_OR_RETURN(std::string bytes, env->ReadFile(path, 1 << 30));
//
// Env::Default() is thread-safe; a WritableFile belongs to one thread.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace fedge {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  virtual absl::Status Append(absl::string_view data) = 0;
  virtual absl::Status Sync() = 0;
  virtual absl::Status Close() = 0;
};

class Env {
 public:
  virtual ~Env() = default;
  // POSIX files and the wall clock.
  static Env* Default();

  virtual absl::Time Now() = 0;
  // Creates or truncates `path`.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) = 0;
  virtual absl::Status RenameFile(const std::string& from, const std::string& to) = 0;
  virtual absl::Status SyncDirectory(const std::string& dir) = 0;
  virtual absl::Status RemoveFile(const std::string& path) = 0;
  // kNotFound if missing, kResourceExhausted if larger than `max_bytes`.
  virtual absl::StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes) = 0;
};

// The current errno as a Status naming `what` was done to `path`: kNotFound,
// kResourceExhausted (full disk), kPermissionDenied, or kInternal.
absl::Status ErrnoError(absl::string_view what, const std::string& path);

// Writes `contents` to `path` all or nothing: a temporary file beside it,
// written, synced, closed, renamed over `path`, then the directory synced.
// On any failure the temporary file is removed and `path` keeps what it
// held; the error names the step that failed.
absl::Status WriteFileAtomically(Env* env, const std::string& path, absl::string_view contents);

}  // namespace fedge

#endif  // FEDGE_COMMON_ENV_ENV_H_
