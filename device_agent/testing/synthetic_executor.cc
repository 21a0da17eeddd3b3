#include "device_agent/testing/synthetic_executor.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "common/codec/update_codec.h"

namespace fedge {

void SyntheticExecutor::Start(const Task& task, absl::Time now) {
  last_task_ = task;
  if (!options_.keep_task_payloads) {
    for (WireTensor& shard : last_task_->shards) std::string().swap(shard.payload);
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
    WireTensor u;
    u.layer = shard.layer;
    u.name = shard.name;
    u.shape = shard.shape;
    const std::vector<float> delta(shard.numel(), finite ? options_.value : 0.0f);
    std::vector<float> residual(delta.size(), 0.0f);
    const UpdateSpec spec = finite && shard.numel() >= options_.sign_ef_from
                                ? UpdateSpec{Codec::kSignEf, 0, 1}
                                : UpdateSpec{Codec::kFp32, 0, 1};
    (void)EncodeUpdate(delta, spec, 0, &residual, &u);
    if (!finite && u.payload.size() >= sizeof(float)) {
      std::memcpy(&u.payload[0], &options_.value, sizeof(float));
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
