#ifndef FEDGE_MODELS_PARTITION_H_
#define FEDGE_MODELS_PARTITION_H_

// Splits a labelled dataset across simulated agents: IID (a shuffled even
// split) or non-IID by a Dirichlet(alpha) distribution over classes per
// agent, the usual federated benchmark (small alpha: each agent sees few
// classes). Deterministic for a seed. Free of LibTorch; thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace fedge {

struct PartitionSpec {
  bool iid = false;
  double alpha = 0.5;
  int agents = 10;
  uint64_t seed = 1;
};

// "iid" or "dirichlet:0.5".
absl::StatusOr<PartitionSpec> ParsePartition(const std::string& text, int agents,
                                             uint64_t seed);

// Sample indices per agent; every sample goes to exactly one agent, and
// every agent gets at least one sample.
absl::StatusOr<std::vector<std::vector<int64_t>>> Partition(const std::vector<int>& labels,
                                                             int num_classes,
                                                             const PartitionSpec& spec);

}  // namespace fedge

#endif  // FEDGE_MODELS_PARTITION_H_
