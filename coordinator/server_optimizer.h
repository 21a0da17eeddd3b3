#ifndef FEDGE_COORDINATOR_SERVER_OPTIMIZER_H_
#define FEDGE_COORDINATOR_SERVER_OPTIMIZER_H_

// The server-side optimizer that turns a round's aggregated update into the
// step applied to the global model: FedAvg applies the mean update as is;
// FedAvgM (Hsu et al., "Measuring the Effects of Non-Identical Data
// Distribution") keeps a server momentum over the mean updates, which lets
// each round's small non-IID step accumulate; FedAdam (Reddi et al.,
// "Adaptive Federated Optimization") treats the update as a pseudo-gradient
// with Adam moments per shard. Both keep O(model) memory. Statistics shards
// (batch-norm running means and spreads) are estimates, not parameters:
// every optimizer applies their mean update as is. Optimizer state is not
// checkpointed: a restarted coordinator starts its moments from zero.
// Not thread-safe.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/aggregator.h"

namespace fedge {

enum class ServerOptimizerKind { kFedAvg, kFedAvgM, kFedAdam };

struct ServerOptimizerOptions {
  ServerOptimizerKind kind = ServerOptimizerKind::kFedAvg;
  // The server learning rate: FedAvg and FedAvgM step by it times the
  // (momentum-averaged) mean update, FedAdam by it times the normalised one.
  double learning_rate = 1;
  double momentum = 0.9;        // FedAvgM
  double beta1 = 0.9;
  double beta2 = 0.99;
  double epsilon = 1e-3;  // tau in the paper: keeps steps bounded
};

class ServerOptimizer {
 public:
  explicit ServerOptimizer(const ServerOptimizerOptions& options) : options_(options) {}

  // Rewrites each updated shard's delta into the step to apply. `names`
  // holds the shards' names, index for index (statistics pass through).
  void Transform(const std::vector<std::string>& names, std::vector<ShardResult>* deltas);

 private:
  ServerOptimizerOptions options_;
  std::vector<std::vector<float>> m_, v_;
};

// "fedavg", "fedavgm" or "fedadam" with a server learning rate (0: the
// optimizer's default, 1 for FedAvg and FedAvgM, 1e-2 for FedAdam) and FedAvgM's
// momentum; errors name the flag (--server_optimizer, --server_lr,
// --server_momentum).
absl::StatusOr<ServerOptimizerOptions> ParseServerOptimizer(const std::string& name,
                                                            double learning_rate, double momentum);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SERVER_OPTIMIZER_H_
