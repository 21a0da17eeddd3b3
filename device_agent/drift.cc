#include "device_agent/drift.h"

#include <utility>

namespace fedge {

std::vector<ModelShard> DriftCorrection::Shifts(const std::vector<ModelShard>& global,
                                                uint64_t version, uint32_t trainable_from,
                                                double learning_rate) const {
  std::vector<ModelShard> out;
  if (!recorded_ || version != version_ + 1 || trainable_from != trainable_from_ ||
      steps_ < 1 || !(learning_rate_ > 0) || !(learning_rate > 0)) {
    return out;
  }
  size_t a = 0;
  const double scale = learning_rate / (learning_rate_ * static_cast<double>(steps_));
  for (const ModelShard& g : global) {
    if (a == anchor_.size()) break;
    if (g.name != anchor_[a].name) continue;
    const ModelShard& b = anchor_[a++];
    if (b.values.size() != g.values.size()) return {};
    ModelShard shift;
    shift.name = g.name;
    shift.layer = g.layer;
    shift.shape = g.shape;
    shift.values.resize(g.values.size());
    for (size_t k = 0; k < g.values.size(); ++k) {
      shift.values[k] =
          static_cast<float>((g.values[k] / server_rate_ - b.values[k]) * scale);
    }
    out.push_back(std::move(shift));
  }
  if (a != anchor_.size()) return {};
  return out;
}

void DriftCorrection::Record(const std::vector<ModelShard>& global,
                             const std::vector<ModelShard>& local,
                             const std::vector<ModelShard>& shifts, uint64_t version,
                             uint32_t trainable_from, int64_t steps, double learning_rate) {
  recorded_ = false;
  anchor_.clear();
  if (global.size() != local.size()) return;
  size_t next_shift = 0;
  for (size_t i = 0; i < global.size(); ++i) {
    const ModelShard& g = global[i];
    const ModelShard& y = local[i];
    if (g.layer < static_cast<int>(trainable_from)) continue;
    if (g.name != y.name || g.values.size() != y.values.size()) {
      anchor_.clear();
      return;
    }
    const ModelShard* shift = nullptr;
    if (next_shift < shifts.size() && shifts[next_shift].name == g.name &&
        shifts[next_shift].values.size() == g.values.size()) {
      shift = &shifts[next_shift++];
    }
    ModelShard b;
    b.name = g.name;
    b.layer = g.layer;
    b.shape = g.shape;
    b.values.resize(g.values.size());
    for (size_t k = 0; k < g.values.size(); ++k) {
      double own = y.values[k] - g.values[k];
      if (shift != nullptr) own -= static_cast<double>(steps) * shift->values[k];
      b.values[k] = static_cast<float>(g.values[k] / server_rate_ + own);
    }
    anchor_.push_back(std::move(b));
  }
  recorded_ = true;
  version_ = version;
  trainable_from_ = trainable_from;
  steps_ = steps;
  learning_rate_ = learning_rate;
}

int64_t DriftCorrection::bytes() const {
  int64_t total = 0;
  for (const ModelShard& b : anchor_) total += static_cast<int64_t>(b.values.size() * sizeof(float));
  return total;
}

}  // namespace fedge
