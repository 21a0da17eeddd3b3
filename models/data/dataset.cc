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

constexpr float kFashionMean = 0.2860f;
constexpr float kFashionStd = 0.3530f;

at::Tensor Normalize(const Dataset& data, const at::Tensor& rows) {
  if (rows.scalar_type() != at::kByte) return rows.to(at::kFloat);
  return rows.to(at::kFloat).mul_(1.0f / (255.0f * data.stddev)).sub_(data.mean / data.stddev);
}

}  // namespace

int64_t Dataset::bytes() const {
  return (images.defined() ? images.nbytes() : 0) + (labels.defined() ? labels.nbytes() : 0);
}

at::Tensor Dataset::Batch(const at::Tensor& index) const {
  return Normalize(*this, images.index_select(0, index));
}

at::Tensor Dataset::Range(int64_t begin, int64_t count) const {
  return Normalize(*this, images.narrow(0, begin, count));
}

BatchSampler::BatchSampler(const Dataset& data, int batch_size, uint64_t seed)
    : data_(data), batch_size_(std::min<int64_t>(batch_size, data.size())), seed_(seed) {}

void BatchSampler::Next(at::Tensor* x, at::Tensor* y) {
  const int64_t n = data_.size();
  if (!order_.defined() || cursor_ + batch_size_ > n) {
    at::Generator gen = at::detail::createCPUGenerator(seed_ + 1000003 * passes_++);
    order_ = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
    cursor_ = 0;
  }
  const at::Tensor index = order_.narrow(0, cursor_, batch_size_);
  cursor_ += batch_size_;
  *x = data_.Batch(index);
  *y = data_.labels.index_select(0, index);
}

absl::StatusOr<Dataset> PadImages(const Dataset& data, int size) {
  if (data.size() == 0 || (data.height() == size && data.width() == size)) return data;
  if (size < data.height() || size < data.width() || size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat("cannot pad ", data.height(), "x",
                                                   data.width(), " images to ", size, "x", size));
  }
  Dataset out = data;
  RETURN_IF_ERROR(CallTorch("padding images", [&] {
    const int top = (size - data.height()) / 2;
    const int left = (size - data.width()) / 2;
    // Black: pixel 0 (uint8), or its normalized value (float data).
    const double black = data.images.scalar_type() == at::kByte ? 0.0 : -data.mean / data.stddev;
    out.images = at::full({data.size(), data.channels(), size, size}, black,
                          data.images.options());
    out.images.narrow(2, top, data.height()).narrow(3, left, data.width()).copy_(data.images);
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Dataset> LoadIdxPair(const std::string& image_path, const std::string& label_path,
                                    int64_t limit, int max_classes) {
  ASSIGN_OR_RETURN(IdxImages images, ReadIdxImages(image_path));
  ASSIGN_OR_RETURN(const std::vector<uint8_t> labels, ReadIdxLabels(label_path));
  if (static_cast<int64_t>(labels.size()) != images.count) {
    return absl::DataLossError(absl::StrCat(image_path, " holds ", images.count, " images but ",
                                            label_path, " holds ", labels.size(), " labels"));
  }
  if (images.count == 0) return absl::InvalidArgumentError(absl::StrCat(image_path, ": no images"));
  int largest = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= max_classes) {
      return absl::DataLossError(absl::StrCat(label_path, ": label ", int{labels[i]}, " at index ",
                                              i, " is outside [0, ", max_classes, ")"));
    }
    largest = std::max(largest, int{labels[i]});
  }
  const int64_t n = limit < 0 ? images.count : std::min(limit, images.count);
  Dataset data;
  data.num_classes = largest + 1;
  RETURN_IF_ERROR(CallTorch(absl::StrCat("building tensors from ", image_path), [&] {
    const auto u8 = at::TensorOptions().dtype(at::kByte);
    data.images = at::from_blob(images.pixels.data(),
                                {n, images.channels, images.rows, images.cols}, u8)
                      .clone();
    data.labels = at::from_blob(const_cast<uint8_t*>(labels.data()), {n}, u8).to(at::kLong);
    return absl::OkStatus();
  }));
  return data;
}

absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir,
                                         DataSplit split,
                                         const LoadOptions& options) {
  const std::string prefix = split == DataSplit::kTrain ? "train" : "t10k";
  const std::string image_path =
      absl::StrCat(dir, "/", prefix, "-images-idx3-ubyte.gz");
  const std::string label_path =
      absl::StrCat(dir, "/", prefix, "-labels-idx1-ubyte.gz");
  ASSIGN_OR_RETURN(Dataset data, LoadIdxPair(image_path, label_path, options.limit, 10));
  data.num_classes = 10;
  data.mean = kFashionMean;
  data.stddev = kFashionStd;
  if (options.pad_to > 0) return PadImages(data, options.pad_to);
  return data;
}

Dataset Subset(const Dataset& data, const at::Tensor& index) {
  Dataset out = data;
  out.images = data.images.index_select(0, index);
  out.labels = data.labels.index_select(0, index);
  return out;
}

}  // namespace fedge
