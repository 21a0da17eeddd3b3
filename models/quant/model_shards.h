#ifndef FEDGE_MODELS_MODEL_SHARDS_H_
#define FEDGE_MODELS_MODEL_SHARDS_H_

// Moves a network's named tensors (QuantNet::Named, MemorySavingNet::Named)
// to and from model shards (common/model_shard.h):
// the coordinator exports its initial model and loads each aggregate to
// evaluate it; an agent loads the shards of its task and exports what it
// trained. Errors throw nothing: shape or name mismatches are a status.

#include <vector>

#include "absl/status/status.h"
#include "common/wire/model_shard.h"
#include "models/bnn/trainable_net.h"

namespace fedge {

std::vector<ModelShard> ExportShards(const std::vector<NamedTensor>& named);

// Copies each shard into the tensor of the same name; a shard the network
// does not have, or of another size, is an error and nothing is copied.
absl::Status ImportShards(const std::vector<NamedTensor>& named,
                          const std::vector<ModelShard>& shards);

}  // namespace fedge

#endif  // FEDGE_MODELS_MODEL_SHARDS_H_
