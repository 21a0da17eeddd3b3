#include "common/env/faulty_env.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace fedge {

bool FaultyEnv::Take(Fault fault) {
  if (fault_ != fault) return false;
  ++injected_;
  if (fault != Fault::kDiskFull) fault_ = Fault::kNone;
  return true;
}

class FaultyEnv::File : public WritableFile {
 public:
  File(FaultyEnv* env, std::string path, std::unique_ptr<WritableFile> base)
      : env_(env), path_(std::move(path)), base_(std::move(base)) {}

  absl::Status Append(absl::string_view data) override {
    if (env_->Take(Fault::kWrite)) {
      return absl::InternalError(absl::StrCat("cannot write ", path_, ": Input/output error"));
    }
    if (env_->Take(Fault::kDiskFull)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot write ", path_, ": No space left on device"));
    }
    if (env_->Take(Fault::kTornWrite)) {
      (void)base_->Append(data.substr(0, data.size() / 2));
      return absl::InternalError(
          absl::StrCat("cannot write ", path_, ": interrupted half-way (torn write)"));
    }
    return base_->Append(data);
  }
  absl::Status Sync() override {
    if (env_->Take(Fault::kSync)) {
      return absl::InternalError(absl::StrCat("cannot sync ", path_, ": Input/output error"));
    }
    return base_->Sync();
  }
  absl::Status Close() override { return base_->Close(); }

 private:
  FaultyEnv* env_;
  std::string path_;
  std::unique_ptr<WritableFile> base_;
};

absl::StatusOr<std::unique_ptr<WritableFile>> FaultyEnv::NewWritableFile(const std::string& path) {
  absl::StatusOr<std::unique_ptr<WritableFile>> file = base_->NewWritableFile(path);
  if (!file.ok()) return file.status();
  return std::unique_ptr<WritableFile>(new File(this, path, std::move(*file)));
}

absl::Status FaultyEnv::RenameFile(const std::string& from, const std::string& to) {
  if (Take(Fault::kRename)) {
    return absl::InternalError(absl::StrCat("cannot rename onto ", to, ": Input/output error"));
  }
  return base_->RenameFile(from, to);
}

}  // namespace fedge
