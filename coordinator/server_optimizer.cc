#include "coordinator/server_optimizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace fedge {

absl::StatusOr<ServerOptimizerOptions> ParseServerOptimizer(const std::string& name,
                                                            double learning_rate,
                                                            double momentum) {
  if (!(learning_rate >= 0 && learning_rate <= 100) || !(momentum >= 0 && momentum < 1)) {
    return absl::InvalidArgumentError(
        "--server_lr must be in [0, 100] and --server_momentum in [0, 1)");
  }
  ServerOptimizerOptions o;
  if (name == "fedadam") {
    o.kind = ServerOptimizerKind::kFedAdam;
    o.learning_rate = learning_rate > 0 ? learning_rate : 1e-2;
  } else if (name == "fedavgm") {
    o.kind = ServerOptimizerKind::kFedAvgM;
    o.learning_rate = learning_rate > 0 ? learning_rate : 1.0;
    o.momentum = momentum;
  } else if (name == "fedavg") {
    o.learning_rate = learning_rate > 0 ? learning_rate : 1.0;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--server_optimizer=", name, ": expected fedavg, fedavgm or fedadam"));
  }
  return o;
}

void ServerOptimizer::Transform(const std::vector<std::string>& names,
                                std::vector<ShardResult>* deltas) {
  if (options_.kind == ServerOptimizerKind::kFedAvg) {
    // The mean update times the server learning rate (1: as it is).
    if (options_.learning_rate == 1) return;
    for (size_t s = 0; s < deltas->size(); ++s) {
      ShardResult& r = (*deltas)[s];
      if (!r.updated || (s < names.size() && IsStatisticsShard(names[s]))) continue;
      for (float& d : r.delta) d = static_cast<float>(options_.learning_rate * d);
    }
    return;
  }
  m_.resize(deltas->size());
  v_.resize(deltas->size());
  for (size_t s = 0; s < deltas->size(); ++s) {
    ShardResult& r = (*deltas)[s];
    if (!r.updated) continue;
    if (s < names.size() && IsStatisticsShard(names[s])) continue;
    if (m_[s].size() != r.delta.size()) {
      m_[s].assign(r.delta.size(), 0.0f);
      if (options_.kind == ServerOptimizerKind::kFedAdam) v_[s].assign(r.delta.size(), 0.0f);
    }
    if (options_.kind == ServerOptimizerKind::kFedAvgM) {
      // m = momentum * m + delta; step = lr * m.
      for (size_t i = 0; i < r.delta.size(); ++i) {
        m_[s][i] = static_cast<float>(options_.momentum * m_[s][i] + r.delta[i]);
        r.delta[i] = static_cast<float>(options_.learning_rate * m_[s][i]);
      }
      continue;
    }
    for (size_t i = 0; i < r.delta.size(); ++i) {
      const double d = r.delta[i];
      m_[s][i] = static_cast<float>(options_.beta1 * m_[s][i] + (1 - options_.beta1) * d);
      v_[s][i] = static_cast<float>(options_.beta2 * v_[s][i] + (1 - options_.beta2) * d * d);
      r.delta[i] = static_cast<float>(options_.learning_rate * m_[s][i] /
                                      (std::sqrt(v_[s][i]) + options_.epsilon));
    }
  }
}

}  // namespace fedge
