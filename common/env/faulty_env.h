#ifndef FEDGE_COMMON_ENV_FAULTY_ENV_H_
#define FEDGE_COMMON_ENV_FAULTY_ENV_H_

// An Env for tests that passes everything to a real one, except the faults
// it is told to inject into the next write, and a clock the test sets:
//   kWrite     the next Append fails (EIO)
//   kSync      the next Sync fails (EIO)
//   kRename    the next RenameFile fails
//   kDiskFull  every Append fails with ENOSPC until cleared
//   kTornWrite the next Append writes only the first half of its data and
//              then fails, as a crash in the middle of a write leaves it
// Each fault but kDiskFull is used once.
//
//   FaultyEnv env(Env::Default());
//   env.Inject(FaultyEnv::Fault::kRename);
//   EXPECT_FALSE(WriteFileAtomically(&env, path, "new").ok());  // path keeps the old
//
// Not thread-safe.

#include <memory>
#include <string>

#include "common/env/env.h"

namespace fedge {

class FaultyEnv : public Env {
 public:
  enum class Fault { kNone, kWrite, kSync, kRename, kDiskFull, kTornWrite };

  explicit FaultyEnv(Env* base) : base_(base) {}

  void Inject(Fault fault) { fault_ = fault; }
  void Clear() { fault_ = Fault::kNone; }
  void SetNow(absl::Time now) { now_ = now; }
  int faults_injected() const { return injected_; }

  absl::Time Now() override { return now_; }
  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override;
  absl::Status RenameFile(const std::string& from, const std::string& to) override;
  absl::Status SyncDirectory(const std::string& dir) override { return base_->SyncDirectory(dir); }
  absl::Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  absl::StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes) override {
    return base_->ReadFile(path, max_bytes);
  }

 private:
  class File;
  // The fault for this operation, if it is the one injected; one-shot
  // faults are used up.
  bool Take(Fault fault);

  Env* base_;
  Fault fault_ = Fault::kNone;
  absl::Time now_ = absl::UnixEpoch();
  int injected_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_ENV_FAULTY_ENV_H_
