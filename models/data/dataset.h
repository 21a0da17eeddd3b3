#ifndef FEDGE_MODELS_DATASET_H_
#define FEDGE_MODELS_DATASET_H_

// Labelled images held as raw uint8 pixels and normalized to float32 one
// batch at a time, so a data set costs one byte per pixel in memory: the
// Fashion-MNIST files from Debian's dataset-fashion-mnist, and a device's own
// data (models/data/local_data.h).
//
//   ASSIGN_OR_RETURN(Dataset train, LoadFashionMnist(
//       kFashionMnistDir, DataSplit::kTrain, {.limit = 6000, .pad_to = 32}));
//   at::Tensor x = train.Batch(index);  // float32 [B, C, H, W]
//
// Thread-compatible.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace fedge {

inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

struct Dataset {
  // uint8 [N, C, H, W] pixels, normalized per batch as
  // (pixel / 255 - mean) / stddev; or float32 [N, C, H, W] already
  // normalized (synthetic data in tests), passed through as is.
  at::Tensor images;
  at::Tensor labels;  // int64 [N]
  int num_classes = 10;
  float mean = 0.0f;
  float stddev = 1.0f;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  int channels() const { return static_cast<int>(images.size(1)); }
  int height() const { return static_cast<int>(images.size(2)); }
  int width() const { return static_cast<int>(images.size(3)); }
  // Bytes the images and labels hold.
  int64_t bytes() const;
  // Float32 normalized images of the rows `index` (int64), or of
  // [begin, begin + count).
  at::Tensor Batch(const at::Tensor& index) const;
  at::Tensor Range(int64_t begin, int64_t count) const;
};

// Shuffled mini-batches without replacement, reshuffled after each pass:
//   BatchSampler batches(data, 64, seed);
//   batches.Next(&x, &y);  // float32 [64, C, H, W], int64 [64]
class BatchSampler {
 public:
  BatchSampler(const Dataset& data, int batch_size, uint64_t seed);
  void Next(at::Tensor* x, at::Tensor* y);

 private:
  const Dataset& data_;
  int64_t batch_size_;
  at::Tensor order_;
  int64_t cursor_ = 0;
  uint64_t seed_;
  uint64_t passes_ = 0;
};

enum class DataSplit { kTrain, kTest };

struct LoadOptions {
  int64_t limit = -1;  // keep the first `limit` samples; -1 keeps all
  int pad_to = 0;      // zero-pad images centrally to pad_to x pad_to (0: no)
};

// An IDX image file (gzip or not) and its label file: the first `limit`
// samples (-1: all) as uint8 images and int64 labels, `num_classes` one past
// the largest label, normalization left to the caller (mean 0, stddev 1).
// Fails naming the file on a missing, truncated or corrupt file, no images,
// image and label counts that disagree, or a label of `max_classes` or more.
absl::StatusOr<Dataset> LoadIdxPair(const std::string& image_path, const std::string& label_path,
                                    int64_t limit, int max_classes);

// Reads {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz under `dir`,
// normalized with Fashion-MNIST's mean and standard deviation. Fails naming
// the file on a missing, truncated or corrupt file, a label outside [0, 10),
// or image and label counts that disagree.
absl::StatusOr<Dataset> LoadFashionMnist(const std::string& dir,
                                         DataSplit split,
                                         const LoadOptions& options);

// Rows `index` (int64) of `data`.
Dataset Subset(const Dataset& data, const at::Tensor& index);

// Pads images centrally to size x size with black pixels; fails when they
// are larger.
absl::StatusOr<Dataset> PadImages(const Dataset& data, int size);

}  // namespace fedge

#endif  // FEDGE_MODELS_DATASET_H_
