#include "models/counting_allocator.h"

#include <atomic>
#include <mutex>

#include "c10/core/Allocator.h"
#include "c10/core/CPUAllocator.h"

namespace fedge {
namespace {

std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
std::atomic<bool> g_installed{false};

void RaisePeak(int64_t live) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak &&
         !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

// Owns the wrapped allocation; its deleter returns the bytes to the count.
struct Allocation {
  c10::DataPtr inner;
  int64_t bytes;
};

void DeleteAllocation(void* context) {
  auto* allocation = static_cast<Allocation*>(context);
  g_live.fetch_sub(allocation->bytes, std::memory_order_relaxed);
  delete allocation;
}

class Counting final : public c10::Allocator {
 public:
  explicit Counting(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) const override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    const c10::Device device = inner.device();
    auto* allocation = new Allocation{std::move(inner), static_cast<int64_t>(n)};
    RaisePeak(g_live.fetch_add(allocation->bytes, std::memory_order_relaxed) +
              allocation->bytes);
    return c10::DataPtr(data, allocation, &DeleteAllocation, device);
  }

 private:
  c10::Allocator* base_;
};

}  // namespace

void CountingCpuAllocator::Install() {
  static std::once_flag once;
  std::call_once(once, [] {
    static Counting* counting = new Counting(c10::GetCPUAllocator());
    c10::SetCPUAllocator(counting, /*priority=*/100);
    g_installed = true;
  });
}

bool CountingCpuAllocator::Installed() { return g_installed; }
int64_t CountingCpuAllocator::LiveBytes() { return g_live.load(); }
int64_t CountingCpuAllocator::PeakBytes() { return g_peak.load(); }
void CountingCpuAllocator::ResetPeak() { g_peak.store(g_live.load()); }

}  // namespace fedge
