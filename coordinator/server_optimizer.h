#ifndef FEDGE_COORDINATOR_SERVER_OPTIMIZER_H_
#define FEDGE_COORDINATOR_SERVER_OPTIMIZER_H_

// The server-side optimizer that turns a round's aggregated update into the
// step applied to the global model (Reddi et al., "Adaptive Federated
// Optimization"): FedAvg applies the mean update as is; FedAdam treats it
// as a pseudo-gradient with Adam moments kept per shard (O(model) memory).
// Not thread-safe.

#include <vector>

#include "coordinator/aggregator.h"

namespace fedge {

enum class ServerOptimizerKind { kFedAvg, kFedAdam };

struct ServerOptimizerOptions {
  ServerOptimizerKind kind = ServerOptimizerKind::kFedAvg;
  double learning_rate = 1e-2;  // FedAdam
  double beta1 = 0.9;
  double beta2 = 0.99;
  double epsilon = 1e-3;  // tau in the paper: keeps steps bounded
};

class ServerOptimizer {
 public:
  explicit ServerOptimizer(const ServerOptimizerOptions& options) : options_(options) {}

  // Rewrites each updated shard's delta into the step to apply.
  void Transform(std::vector<ShardResult>* deltas);

 private:
  ServerOptimizerOptions options_;
  std::vector<std::vector<float>> m_, v_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_SERVER_OPTIMIZER_H_
