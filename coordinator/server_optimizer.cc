#include "coordinator/server_optimizer.h"

#include <cmath>

namespace fedge {

void ServerOptimizer::Transform(std::vector<ShardResult>* deltas) {
  if (options_.kind == ServerOptimizerKind::kFedAvg) return;
  m_.resize(deltas->size());
  v_.resize(deltas->size());
  for (size_t s = 0; s < deltas->size(); ++s) {
    ShardResult& r = (*deltas)[s];
    if (!r.updated) continue;
    if (m_[s].size() != r.delta.size()) {
      m_[s].assign(r.delta.size(), 0.0f);
      v_[s].assign(r.delta.size(), 0.0f);
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
