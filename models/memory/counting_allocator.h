#ifndef FEDGE_MODELS_COUNTING_ALLOCATOR_H_
#define FEDGE_MODELS_COUNTING_ALLOCATOR_H_

// Wraps LibTorch's CPU allocator to count the bytes of live tensor storage
// and their peak. It measures what a training step really holds, for the
// memory-saving method and the standard trainer alike, with one instrument.
// Used by tests and benchmarks, never in the agent's hot path.
//
//   CountingCpuAllocator::Install();   // once, before tensors are made
//   const int64_t before = CountingCpuAllocator::LiveBytes();
//   ... forward ...
//   const int64_t held = CountingCpuAllocator::LiveBytes() - before;
//
// Thread-safe (atomics). Tensors allocated before Install() are not counted.

#include <cstdint>

namespace fedge {

class CountingCpuAllocator {
 public:
  // Makes the counting allocator LibTorch's CPU allocator. Idempotent. Does
  // nothing (Installed() stays false) if the current CPU allocator has no
  // raw deleter to free through.
  static void Install();
  static bool Installed();
  static int64_t LiveBytes();
  static int64_t PeakBytes();
  // Sets the peak to the current live bytes.
  static void ResetPeak();
};

}  // namespace fedge

#endif  // FEDGE_MODELS_COUNTING_ALLOCATOR_H_
