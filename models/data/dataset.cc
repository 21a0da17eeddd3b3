#include "models/data/dataset.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "models/data/idx_reader.h"

namespace fedge {
namespace {

constexpr double kFashionMean = 0.2860;
constexpr double kFashionStd = 0.3530;

}  // namespace

absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir,
                                         DataSplit split,
                                         const LoadOptions& options) {
  const std::string prefix = split == DataSplit::kTrain ? "train" : "t10k";
  const std::string image_path =
      absl::StrCat(dir, "/", prefix, "-images-idx3-ubyte.gz");
  const std::string label_path =
      absl::StrCat(dir, "/", prefix, "-labels-idx1-ubyte.gz");
  ASSIGN_OR_RETURN(IdxImages images, ReadIdxImages(image_path));
  ASSIGN_OR_RETURN(std::vector<uint8_t> labels, ReadIdxLabels(label_path));
  if (static_cast<int64_t>(labels.size()) != images.count) {
    return absl::DataLossError(absl::StrCat(
        image_path, " holds ", images.count, " images but ", label_path,
        " holds ", labels.size(), " labels"));
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= 10) {
      return absl::DataLossError(absl::StrCat(
          label_path, ": label ", int{labels[i]}, " at index ", i,
          " is outside [0, 10)"));
    }
  }
  if (options.pad_to != 0 &&
      (options.pad_to < images.rows || options.pad_to < images.cols ||
       options.pad_to > 4096)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pad_to ", options.pad_to, " is smaller than the ", images.rows, "x",
        images.cols, " images"));
  }
  const int64_t n = options.limit < 0 ? images.count
                                      : std::min(options.limit, images.count);
  Dataset data;
  RETURN_IF_ERROR(CallTorch("building Fashion-MNIST tensors", [&] {
    const auto u8 = at::TensorOptions().dtype(at::kByte);
    at::Tensor pixels =
        at::from_blob(images.pixels.data(), {n, 1, images.rows, images.cols}, u8)
            .to(at::kFloat)
            .div_(255.0)
            .sub_(kFashionMean)
            .div_(kFashionStd);
    if (options.pad_to > 0) {
      const int top = (options.pad_to - images.rows) / 2;
      const int left = (options.pad_to - images.cols) / 2;
      // Pad with the normalized value of a black pixel.
      at::Tensor padded = at::full({n, 1, options.pad_to, options.pad_to},
                                   -kFashionMean / kFashionStd,
                                   at::TensorOptions().dtype(at::kFloat));
      padded.narrow(2, top, images.rows).narrow(3, left, images.cols).copy_(pixels);
      pixels = padded;
    }
    data.images = pixels;
    data.labels =
        at::from_blob(labels.data(), {n}, u8).to(at::kLong);
    return absl::OkStatus();
  }));
  return data;
}

Dataset Subset(const Dataset& data, const at::Tensor& index) {
  Dataset out;
  out.images = data.images.index_select(0, index);
  out.labels = data.labels.index_select(0, index);
  out.num_classes = data.num_classes;
  return out;
}

}  // namespace fedge
