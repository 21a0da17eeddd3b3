#include "device_agent/testing/synthetic_executor.h"

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "common/codec/update_codec.h"

namespace fedge {
namespace {

// Encoded updates shared by every executor that reuses them, by shard name,
// element count, codec and value.
absl::Mutex g_encoded_mu;
std::map<std::tuple<std::string, int64_t, int, float>, WireTensor>* EncodedUpdates()
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_encoded_mu) {
  static auto* cache = new std::map<std::tuple<std::string, int64_t, int, float>, WireTensor>();
  return cache;
}

}  // namespace

void SyntheticExecutor::Start(const Task& task, absl::Time now) {
  if (options_.keep_task_payloads) {
    last_task_ = task;
  } else {
    // The headers alone: no copy of the shards' bytes.
    Task headers = task;
    headers.shards.clear();
    for (const WireTensor& shard : task.shards) {
      WireTensor h;
      h.layer = shard.layer;
      h.name = shard.name;
      h.shape = shard.shape;
      h.codec = shard.codec;
      h.bits = shard.bits;
      h.slices = shard.slices;
      headers.shards.push_back(std::move(h));
    }
    last_task_ = std::move(headers);
  }
  TaskResult r;
  r.round_id = task.round_id;
  r.task_id = task.task_id;
  r.model_version = task.model_version;
  r.samples = options_.samples;
  r.loss = 1.0f;
  r.accuracy = 0.5f;
  r.peak_memory_bytes = options_.peak_memory_bytes;
  const bool finite = std::isfinite(options_.value);
  for (const WireTensor& shard : task.shards) {
    const bool sign_ef = finite && shard.numel() >= options_.sign_ef_from;
    const auto key = std::make_tuple(shard.name, shard.numel(), sign_ef ? 1 : 0, options_.value);
    if (options_.reuse_encoded_updates && finite) {
      absl::MutexLock lock(&g_encoded_mu);
      auto it = EncodedUpdates()->find(key);
      if (it != EncodedUpdates()->end() && it->second.shape == shard.shape &&
          it->second.layer == shard.layer) {
        r.updates.push_back(it->second);
        continue;
      }
    }
    WireTensor u;
    u.layer = shard.layer;
    u.name = shard.name;
    u.shape = shard.shape;
    const std::vector<float> delta(shard.numel(), finite ? options_.value : 0.0f);
    std::vector<float> residual(delta.size(), 0.0f);
    const UpdateSpec spec = sign_ef ? UpdateSpec{Codec::kSignEf, 0, 1}
                                    : UpdateSpec{Codec::kFp32, 0, 1};
    (void)EncodeUpdate(delta, spec, 0, &residual, &u);
    if (!finite && u.payload.size() >= sizeof(float)) {
      std::memcpy(&u.payload[0], &options_.value, sizeof(float));
    }
    if (options_.reuse_encoded_updates && finite) {
      absl::MutexLock lock(&g_encoded_mu);
      (*EncodedUpdates())[key] = u;
    }
    r.updates.push_back(std::move(u));
  }
  result_ = std::move(r);
  ready_ = now + options_.train_time;
}

std::optional<absl::StatusOr<TaskResult>> SyntheticExecutor::Poll(absl::Time now) {
  if (!result_ || now < ready_) return std::nullopt;
  absl::StatusOr<TaskResult> out = std::move(*result_);
  result_.reset();
  return out;
}

}  // namespace fedge
