#ifndef FEDGE_COORDINATOR_MODEL_STATE_H_
#define FEDGE_COORDINATOR_MODEL_STATE_H_

// The global model as the coordinator holds it: an ordered list of named
// float32 shards (a layer's weights, its quantizer steps and ranges, its
// batch-norm parameters and statistics), and a version bumped by every
// aggregation. Free of LibTorch; the agent converts to and from its network.
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/wire/model_shard.h"
#include "coordinator/aggregator.h"

namespace fedge {

struct ModelState {
  uint64_t version = 0;
  std::vector<ModelShard> shards;

  int64_t parameter_count() const;
  std::vector<ShardShape> Shapes() const;
  // Adds each updated shard's delta (server learning rate 1: FedAvg),
  // then bumps the version. Fails, changing nothing, on a size mismatch or
  // a non-finite result.
  absl::Status Apply(const std::vector<ShardResult>& deltas);
};

// Pools a round's batch-norm statistics (FedAvg): averaging the agents'
// statistics misses how far their data lie apart, and on non-IID data the
// averaged spread is too small. From each statistics shard's spread
// (ShardResult::spread: the variance of the agents' values) the aggregate
// becomes the statistics of all their data together:
//   running_var    mean(var_i) + var(mean_i)              (exact)
//   running_sigma  sqrt(mean(s_i)^2 + var(s_i) + 2/pi var(mean_i))
// the second for the l1 norm's mean absolute deviation s, as for normal
// data (s = sqrt(2/pi) sd). A layer's statistics pool only when its
// running_mean and its var or sigma shard both carry a spread; nothing
// else changes.
void PoolStatistics(const ModelState& model, std::vector<ShardResult>* deltas);

// Binary form with a magic, a checksum and explicit lengths; Parse rejects
// anything truncated or corrupt.
std::string SerializeModel(const ModelState& model);
absl::StatusOr<ModelState> ParseModel(const std::string& bytes);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_MODEL_STATE_H_
