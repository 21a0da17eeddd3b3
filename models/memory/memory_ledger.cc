#include "models/memory/memory_ledger.h"

#include <algorithm>

namespace fedge {

void MemoryLedger::Hold(absl::string_view layer, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  auto it = layers_.find(layer);
  if (it == layers_.end()) it = layers_.emplace(std::string(layer), LayerBytes()).first;
  it->second.held += bytes;
  it->second.peak = std::max(it->second.peak, it->second.held);
  saved_ += bytes;
  peak_saved_ = std::max(peak_saved_, saved_);
}

void MemoryLedger::Release(absl::string_view layer, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  auto it = layers_.find(layer);
  if (it == layers_.end()) return;
  it->second.held -= bytes;
  saved_ -= bytes;
}

void MemoryLedger::SetState(StateKind kind, int64_t bytes) {
  absl::MutexLock lock(&mu_);
  state_[static_cast<int>(kind)] = bytes;
}

int64_t MemoryLedger::saved_bytes() const {
  absl::MutexLock lock(&mu_);
  return saved_;
}

int64_t MemoryLedger::peak_saved_bytes() const {
  absl::MutexLock lock(&mu_);
  return peak_saved_;
}

int64_t MemoryLedger::state_bytes(StateKind kind) const {
  absl::MutexLock lock(&mu_);
  return state_[static_cast<int>(kind)];
}

int64_t MemoryLedger::state_total() const {
  absl::MutexLock lock(&mu_);
  return state_[0] + state_[1] + state_[2];
}

int64_t MemoryLedger::peak_total() const {
  absl::MutexLock lock(&mu_);
  return peak_saved_ + state_[0] + state_[1] + state_[2];
}

std::map<std::string, MemoryLedger::LayerBytes> MemoryLedger::layers() const {
  absl::MutexLock lock(&mu_);
  return std::map<std::string, LayerBytes>(layers_.begin(), layers_.end());
}

void MemoryLedger::ResetPeaks() {
  absl::MutexLock lock(&mu_);
  peak_saved_ = saved_;
  for (auto& [name, bytes] : layers_) bytes.peak = bytes.held;
}

}  // namespace fedge
