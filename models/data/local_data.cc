#include "models/data/local_data.h"

#include <ATen/ATen.h>
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "models/data/image_decode.h"

namespace fedge {
namespace {

constexpr float kLocalMean = 0.5f;
constexpr float kLocalStd = 0.5f;
constexpr int kMaxClasses = 1000;

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Sorted entries of `dir` (no dot files).
absl::StatusOr<std::vector<std::string>> ListDirectory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat(dir, ": cannot list: ", std::strerror(errno)));
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<Dataset> FromPixels(std::vector<uint8_t>& pixels, std::vector<int64_t>& labels,
                                   int channels, int height, int width, int classes) {
  Dataset data;
  data.num_classes = classes;
  data.mean = kLocalMean;
  data.stddev = kLocalStd;
  const int64_t n = static_cast<int64_t>(labels.size());
  RETURN_IF_ERROR(CallTorch("building the local data set", [&] {
    data.images = at::from_blob(pixels.data(), {n, channels, height, width},
                                at::TensorOptions().dtype(at::kByte))
                      .clone();
    data.labels = at::from_blob(labels.data(), {n}, at::TensorOptions().dtype(at::kLong)).clone();
    return absl::OkStatus();
  }));
  return data;
}

// An IDX pair, on the local data's normalization.
absl::StatusOr<Dataset> LoadLocalIdx(const std::string& image_path, const std::string& label_path,
                                     int64_t limit) {
  ASSIGN_OR_RETURN(Dataset data, LoadIdxPair(image_path, label_path, limit, 256));
  data.mean = kLocalMean;
  data.stddev = kLocalStd;
  return data;
}

bool IsImageName(const std::string& name) {
  const std::string lower = absl::AsciiStrToLower(name);
  return absl::EndsWith(lower, ".png") || absl::EndsWith(lower, ".jpg") ||
         absl::EndsWith(lower, ".jpeg");
}

absl::StatusOr<LocalData> LoadImageFolder(const std::string& dir, int64_t limit) {
  ASSIGN_OR_RETURN(const std::vector<std::string> entries, ListDirectory(dir));
  LocalData out;
  out.source = dir;
  for (const std::string& e : entries) {
    if (IsDirectory(absl::StrCat(dir, "/", e))) out.class_names.push_back(e);
  }
  if (out.class_names.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        dir, ": no class subfolders (expected DIR/CLASS/*.png or *.jpg, or an IDX image and "
             "label file)"));
  }
  if (out.class_names.size() > kMaxClasses) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": ", out.class_names.size(), " class folders, at most ", kMaxClasses));
  }
  std::vector<uint8_t> pixels;
  std::vector<int64_t> labels;
  DecodedImage first;
  std::string first_path;
  for (size_t c = 0; c < out.class_names.size(); ++c) {
    const std::string class_dir = absl::StrCat(dir, "/", out.class_names[c]);
    ASSIGN_OR_RETURN(const std::vector<std::string> files, ListDirectory(class_dir));
    int64_t found = 0;
    for (const std::string& f : files) {
      if (!IsImageName(f)) continue;
      if (limit >= 0 && static_cast<int64_t>(labels.size()) >= limit) break;
      const std::string path = absl::StrCat(class_dir, "/", f);
      ASSIGN_OR_RETURN(DecodedImage image, DecodeImageFile(path));
      if (first_path.empty()) {
        first_path = path;
        first.channels = image.channels;
        first.height = image.height;
        first.width = image.width;
      } else if (image.channels != first.channels || image.height != first.height ||
                 image.width != first.width) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": ", image.channels, "x", image.height, "x", image.width,
            " (channels x height x width) unlike ", first_path, ": ", first.channels, "x",
            first.height, "x", first.width));
      }
      pixels.insert(pixels.end(), image.pixels.begin(), image.pixels.end());
      labels.push_back(static_cast<int64_t>(c));
      ++found;
    }
    if (found == 0 && (limit < 0 || static_cast<int64_t>(labels.size()) < limit)) {
      return absl::InvalidArgumentError(
          absl::StrCat(class_dir, ": no PNG or JPEG images in this class folder"));
    }
  }
  ASSIGN_OR_RETURN(out.train, FromPixels(pixels, labels, first.channels, first.height,
                                         first.width, static_cast<int>(out.class_names.size())));
  return out;
}

}  // namespace

void SplitHeldOut(const Dataset& data, double share, uint64_t seed, Dataset* train,
                  Dataset* held_out) {
  const int64_t n = data.size();
  int64_t keep_out = static_cast<int64_t>(share * static_cast<double>(n));
  if (share > 0 && n >= 10) keep_out = std::max<int64_t>(keep_out, 1);
  keep_out = std::min(keep_out, n - 1);
  if (keep_out <= 0) {
    *train = data;
    *held_out = Dataset();
    held_out->num_classes = data.num_classes;
    return;
  }
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor order = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
  *held_out = Subset(data, order.narrow(0, 0, keep_out));
  *train = Subset(data, order.narrow(0, keep_out, n - keep_out));
}

absl::StatusOr<LocalData> LoadLocalData(const std::string& path, const LocalDataOptions& options) {
  if (!(options.holdout >= 0 && options.holdout < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("held-out share ", options.holdout, " is not in [0, 1)"));
  }
  LocalData out;
  const std::vector<std::string> pair = absl::StrSplit(path, ',');
  if (pair.size() == 2) {
    out.source = pair[0];
    ASSIGN_OR_RETURN(out.train, LoadLocalIdx(pair[0], pair[1], options.limit));
  } else if (pair.size() != 1 || path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' is neither IMAGES,LABELS nor a directory"));
  } else if (!IsDirectory(path)) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        path, " is a file: give an IDX pair as IMAGES,LABELS, or a directory"));
  } else {
    ASSIGN_OR_RETURN(const std::vector<std::string> entries, ListDirectory(path));
    std::vector<std::string> image_files, label_files;
    for (const std::string& e : entries) {
      if (!absl::StrContains(e, "idx")) continue;
      if (absl::StrContains(e, "images")) image_files.push_back(absl::StrCat(path, "/", e));
      if (absl::StrContains(e, "labels")) label_files.push_back(absl::StrCat(path, "/", e));
    }
    if (image_files.size() == 1 && label_files.size() == 1) {
      out.source = image_files[0];
      ASSIGN_OR_RETURN(out.train, LoadLocalIdx(image_files[0], label_files[0], options.limit));
    } else if (!image_files.empty() || !label_files.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", image_files.size(), " IDX image and ", label_files.size(),
          " IDX label files; expected one of each (or give IMAGES,LABELS)"));
    } else {
      ASSIGN_OR_RETURN(out, LoadImageFolder(path, options.limit));
    }
  }
  const Dataset all = out.train;
  SplitHeldOut(all, options.holdout, options.seed, &out.train, &out.held_out);
  return out;
}

absl::Status CheckInput(const Dataset& data, const InputShape& shape, int classes,
                        const std::string& source) {
  if (data.size() == 0) return absl::InvalidArgumentError(absl::StrCat(source, ": no samples"));
  if (data.channels() != shape.channels || data.height() != shape.height ||
      data.width() != shape.width) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": images are ", data.channels(), "x", data.height(), "x", data.width(),
        " (channels x height x width), the model takes ", shape.channels, "x", shape.height, "x",
        shape.width));
  }
  const int64_t max_label = data.labels.max().item<int64_t>();
  const int64_t min_label = data.labels.min().item<int64_t>();
  if (min_label < 0 || max_label >= classes) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": label ",
                                                   min_label < 0 ? min_label : max_label,
                                                   " is outside the model's [0, ", classes, ")"));
  }
  return absl::OkStatus();
}

}  // namespace fedge
