#include "common/env/env.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace fedge {
namespace {

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

class PosixFile : public WritableFile {
 public:
  PosixFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixFile() override {
    if (fd_ >= 0) close(fd_);
  }
  absl::Status Append(absl::string_view data) override {
    size_t written = 0;
    while (written < data.size()) {
      const ssize_t n = write(fd_, data.data() + written, data.size() - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("cannot write", path_);
      }
      written += static_cast<size_t>(n);
    }
    return absl::OkStatus();
  }
  absl::Status Sync() override {
    return fsync(fd_) == 0 ? absl::OkStatus() : ErrnoError("cannot sync", path_);
  }
  absl::Status Close() override {
    const int fd = fd_;
    fd_ = -1;
    return close(fd) == 0 ? absl::OkStatus() : ErrnoError("cannot close", path_);
  }

 private:
  std::string path_;
  int fd_;
};

class PosixEnv : public Env {
 public:
  absl::Time Now() override { return absl::Now(); }

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return ErrnoError("cannot create", path);
    return std::unique_ptr<WritableFile>(new PosixFile(path, fd));
  }
  absl::Status RenameFile(const std::string& from, const std::string& to) override {
    return rename(from.c_str(), to.c_str()) == 0 ? absl::OkStatus()
                                                 : ErrnoError("cannot rename onto", to);
  }
  absl::Status SyncDirectory(const std::string& dir) override {
    const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("cannot open directory", dir);
    const bool ok = fsync(fd) == 0;
    absl::Status status = ok ? absl::OkStatus() : ErrnoError("cannot sync directory", dir);
    close(fd);
    return status;
  }
  absl::Status RemoveFile(const std::string& path) override {
    return unlink(path.c_str()) == 0 ? absl::OkStatus() : ErrnoError("cannot remove", path);
  }
  absl::StatusOr<std::string> ReadFile(const std::string& path, int64_t max_bytes) override {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoError("cannot open", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
      absl::Status status = ErrnoError("cannot stat", path);
      close(fd);
      return status;
    }
    if (st.st_size > max_bytes) {
      close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat(path, " is ", st.st_size, " bytes, more than the limit of ", max_bytes));
    }
    std::string out(static_cast<size_t>(st.st_size), '\0');
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = read(fd, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        absl::Status status =
            n < 0 ? ErrnoError("cannot read", path)
                  : absl::DataLossError(absl::StrCat(path, " shrank while being read"));
        close(fd);
        return status;
      }
      done += static_cast<size_t>(n);
    }
    close(fd);
    return out;
  }
};

}  // namespace

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  const int error = errno;
  const std::string message = absl::StrCat(what, " ", path, ": ", std::strerror(error));
  if (error == ENOENT) return absl::NotFoundError(message);
  if (error == ENOSPC || error == EDQUOT) return absl::ResourceExhaustedError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::InternalError(message);
}

Env* Env::Default() {
  static Env* env = new PosixEnv();
  return env;
}

absl::Status WriteFileAtomically(Env* env, const std::string& path, absl::string_view contents) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  absl::StatusOr<std::unique_ptr<WritableFile>> file = env->NewWritableFile(temp);
  if (!file.ok()) return file.status();
  absl::Status status = (*file)->Append(contents);
  if (status.ok()) status = (*file)->Sync();
  absl::Status closed = (*file)->Close();
  if (status.ok()) status = closed;
  if (status.ok()) status = env->RenameFile(temp, path);
  if (!status.ok()) {
    (void)env->RemoveFile(temp);
    return status;
  }
  // The rename is durable once the directory is synced.
  status = env->SyncDirectory(DirectoryOf(path));
  if (!status.ok()) {
    return absl::Status(status.code(), absl::StrCat(path, " was replaced, but ", status.message()));
  }
  return absl::OkStatus();
}

}  // namespace fedge
