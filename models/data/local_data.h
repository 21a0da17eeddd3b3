#ifndef FEDGE_MODELS_LOCAL_DATA_H_
#define FEDGE_MODELS_LOCAL_DATA_H_

// A device's own labelled images (the agent's --data), with a held-out
// share for local accuracy:
//   IMAGES,LABELS       an IDX image file and an IDX label file, gzip or not
//                       (N x H x W, or N x H x W x C for colour)
//   DIR                 holding exactly one *images*idx* and one *labels*idx*
//                       file: the same
//   DIR/CLASS/*.png|jpg one subfolder per class (sorted by name: label 0, 1,
//                       ...), PNG or JPEG images of one size and channel count
// Pixels stay uint8 (Dataset normalizes per batch, to [-1, 1]). Every
// failure names the file: missing, empty, damaged, a size or channel count
// unlike the others, labels and images that disagree, no classes.
//
//   ASSIGN_OR_RETURN(LocalData data, LoadLocalData("/data/board7", {}));
//   RETURN_IF_ERROR(CheckInput(data.train, {1, 28, 28}, 10, data.source));
//
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "models/data/dataset.h"
#include "models/shape/layer_shape.h"

namespace fedge {

struct LocalDataOptions {
  double holdout = 0.1;  // share of the samples kept out of training
  uint64_t seed = 1;     // which samples are held out
  int64_t limit = -1;    // keep at most this many samples (-1: all)
};

struct LocalData {
  Dataset train;
  Dataset held_out;
  std::string source;                    // what was read, for messages
  std::vector<std::string> class_names;  // folder layout; empty for IDX
};

absl::StatusOr<LocalData> LoadLocalData(const std::string& path, const LocalDataOptions& options);

// Fails, naming `source`, when the images are not of `shape` or a label is
// outside [0, classes).
absl::Status CheckInput(const Dataset& data, const InputShape& shape, int classes,
                        const std::string& source);

// Splits off a random `share` of `data` (seeded), at least one sample when
// there are ten or more.
void SplitHeldOut(const Dataset& data, double share, uint64_t seed, Dataset* train,
                  Dataset* held_out);

}  // namespace fedge

#endif  // FEDGE_MODELS_LOCAL_DATA_H_
