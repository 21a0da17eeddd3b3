#include "models/memory/counting_allocator.h"

#include <atomic>
#include <mutex>
#include <unordered_map>

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

// LibTorch's raw_allocate() requires data == context, so sizes are kept in
// a side table keyed by the data pointer rather than in a context object.
std::mutex g_sizes_mu;
std::unordered_map<void*, int64_t>* g_sizes = new std::unordered_map<void*, int64_t>();
c10::DeleterFnPtr g_base_deleter = nullptr;

void CountingDelete(void* data) {
  int64_t bytes = 0;
  {
    std::lock_guard<std::mutex> lock(g_sizes_mu);
    auto it = g_sizes->find(data);
    if (it != g_sizes->end()) {
      bytes = it->second;
      g_sizes->erase(it);
    }
  }
  g_live.fetch_sub(bytes, std::memory_order_relaxed);
  g_base_deleter(data);
}

class Counting final : public c10::Allocator {
 public:
  explicit Counting(c10::Allocator* base) : base_(base) {}

  c10::DataPtr allocate(size_t n) const override {
    c10::DataPtr inner = base_->allocate(n);
    void* data = inner.get();
    if (data == nullptr) return inner;
    const c10::Device device = inner.device();
    inner.release_context();
    {
      std::lock_guard<std::mutex> lock(g_sizes_mu);
      (*g_sizes)[data] = static_cast<int64_t>(n);
    }
    RaisePeak(g_live.fetch_add(static_cast<int64_t>(n),
                               std::memory_order_relaxed) +
              static_cast<int64_t>(n));
    return c10::DataPtr(data, data, &CountingDelete, device);
  }

  c10::DeleterFnPtr raw_deleter() const override { return &CountingDelete; }

 private:
  c10::Allocator* base_;
};

}  // namespace

void CountingCpuAllocator::Install() {
  static std::once_flag once;
  std::call_once(once, [] {
    c10::Allocator* base = c10::GetCPUAllocator();
    // Counting frees through the base allocator's raw deleter, which the
    // default CPU allocator has.
    g_base_deleter = base->raw_deleter();
    if (g_base_deleter == nullptr) return;
    static Counting* counting = new Counting(base);
    c10::SetCPUAllocator(counting, /*priority=*/100);
    g_installed = true;
  });
}

bool CountingCpuAllocator::Installed() { return g_installed; }
int64_t CountingCpuAllocator::LiveBytes() { return g_live.load(); }
int64_t CountingCpuAllocator::PeakBytes() { return g_peak.load(); }
void CountingCpuAllocator::ResetPeak() { g_peak.store(g_live.load()); }

}  // namespace fedge
