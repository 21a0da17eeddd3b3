#ifndef FEDGE_COMMON_MODEL_SHARD_H_
#define FEDGE_COMMON_MODEL_SHARD_H_

// One named tensor of a model, as float32 values: a layer's weights, its
// quantizer steps and ranges, its batch-norm parameters or statistics. The
// unit the coordinator distributes and aggregates. Plain value.

#include <cstdint>
#include <string>
#include <vector>

namespace fedge {

struct ModelShard {
  std::string name;  // "conv1.weight"
  int layer = 0;
  std::vector<uint32_t> shape;
  std::vector<float> values;
};

}  // namespace fedge

#endif  // FEDGE_COMMON_MODEL_SHARD_H_
