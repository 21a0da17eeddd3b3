#ifndef FEDGE_MODELS_MEMORY_LEDGER_H_
#define FEDGE_MODELS_MEMORY_LEDGER_H_

// Counts the bytes a training step actually holds: every tensor a layer saves
// for backward is recorded when saved and released when backward has used
// it; weights, weight gradients and optimizer state are recorded by their
// owners. Reports current and peak totals, per layer and overall, so the
// memory of the method is measured rather than assumed.
//
//   MemoryLedger ledger;
//   ledger.Hold("conv2", 100 * 9216 / 8);   // packed 1-bit signs
//   ... backward ...
//   ledger.Release("conv2", 100 * 9216 / 8);
//   ledger.peak_saved_bytes();
//
// Thread-safe.

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace fedge {

enum class StateKind { kWeights, kWeightGrads, kOptimizer };

class MemoryLedger {
 public:
  struct LayerBytes {
    int64_t held = 0;
    int64_t peak = 0;
  };

  MemoryLedger() = default;
  MemoryLedger(const MemoryLedger&) = delete;
  MemoryLedger& operator=(const MemoryLedger&) = delete;

  // Bytes saved for backward by `layer`, and their release.
  void Hold(absl::string_view layer, int64_t bytes);
  void Release(absl::string_view layer, int64_t bytes);

  // Bytes of persistent training state, set (not added) by its owner.
  void SetState(StateKind kind, int64_t bytes);

  int64_t saved_bytes() const;
  int64_t peak_saved_bytes() const;
  int64_t state_bytes(StateKind kind) const;
  int64_t state_total() const;
  // Peak saved bytes plus all persistent state: the design's figure of
  // "bytes held for backward + weights + grads + optimizer".
  int64_t peak_total() const;
  std::map<std::string, LayerBytes> layers() const;

  // Forgets peaks (not current holdings), e.g. after a warm-up step.
  void ResetPeaks();

 private:
  mutable absl::Mutex mu_;
  std::map<std::string, LayerBytes, std::less<>> layers_ ABSL_GUARDED_BY(mu_);
  int64_t saved_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t peak_saved_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t state_[3] ABSL_GUARDED_BY(mu_) = {0, 0, 0};
};

}  // namespace fedge

#endif  // FEDGE_MODELS_MEMORY_LEDGER_H_
