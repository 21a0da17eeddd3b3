#ifndef FEDGE_MODELS_DATASET_H_
#define FEDGE_MODELS_DATASET_H_

// Labelled images as tensors, and the Fashion-MNIST files from Debian's
// dataset-fashion-mnist package.
//
//   ASSIGN_OR_RETURN(Dataset train, LoadFashionMnist(
//       kFashionMnistDir, DataSplit::kTrain, {.limit = 6000, .pad_to = 32}));
//
// Thread-compatible.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace fedge {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

struct Dataset {
  at::Tensor images;  // float32 [N, C, H, W], normalized
  at::Tensor labels;  // int64 [N]
  int num_classes = 10;
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

enum class DataSplit { kTrain, kTest };

struct LoadOptions {
  int64_t limit = -1;  // keep the first `limit` samples; -1 keeps all
  int pad_to = 0;      // zero-pad images centrally to pad_to x pad_to (0: no)
};

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz under `dir`.
// Pixels are scaled to [0, 1] and normalized with Fashion-MNIST's mean and
// standard deviation. Fails naming the file on a missing, truncated or
// corrupt file, a label outside [0, 10), or image and label counts that
// disagree.
absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir,
                                         DataSplit split,
                                         const LoadOptions& options);

// Rows `index` (int64) of `data`.
Dataset Subset(const Dataset& data, const at::Tensor& index);

}  // namespace fedge

#endif  // FEDGE_MODELS_DATASET_H_
