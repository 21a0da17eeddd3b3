#include "device_agent/task_runner.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/env/process_memory.h"
#include "models/data/dataset.h"
#include "models/memory/counting_allocator.h"

namespace fedge {

TaskRunner::TaskRunner(std::unique_ptr<FederatedModel> model, Dataset data, Dataset held_out,
                       const TaskRunnerOptions& options)
    : model_(std::move(model)),
      data_(std::move(data)),
      held_out_(std::move(held_out)),
      options_(options) {}

absl::Status TaskRunner::LoadResidual() {
  if (options_.residual_path.empty()) return absl::OkStatus();
  absl::Status status = feedback_.Load(options_.residual_path, options_.env);
  if (status.code() == absl::StatusCode::kNotFound) return absl::OkStatus();
  return status;
}

absl::StatusOr<TaskResult> TaskRunner::Run(const Task& task, const std::atomic<bool>* cancel) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<ModelShard> shards;
  for (const WireTensor& t : task.shards) {
    ModelShard shard;
    shard.name = t.name;
    shard.layer = static_cast<int>(t.layer);
    shard.shape = t.shape;
    shard.values.resize(t.numel());
    RETURN_IF_ERROR(Annotate(DecodeTensor(t, absl::MakeSpan(shard.values)),
                             absl::StrCat("decoding shard ", t.name)));
    shards.push_back(std::move(shard));
  }
  RETURN_IF_ERROR(model_->ImportShards(shards));
  shards.clear();
  shards.shrink_to_fit();
  model_->FreezeBefore(static_cast<int>(task.trainable_from));
  const std::vector<ModelShard> before = model_->ExportShards();

  PhaseConfig config;
  config.phase = task.phase;
  config.steps = task.hyper.local_steps;
  config.batch_size = static_cast<int>(task.hyper.batch_size);
  config.learning_rate = task.hyper.learning_rate;
  config.quantizer_every = static_cast<int>(task.hyper.quantizer_every);
  config.budget.weight_kb = task.hyper.weight_budget_kb;
  config.budget.activation_kb = task.hyper.activation_budget_kb;
  config.budget.lambda_w = task.hyper.lambda_w;
  config.budget.lambda_a = task.hyper.lambda_a;
  config.budget.form = static_cast<PenaltyForm>(task.hyper.penalty_form);
  model_->SetSizeAccounting(static_cast<SizeAccounting>(task.hyper.size_accounting));
  config.ramp = task.hyper.penalty_scale;
  config.seed = task.seed;
  config.keep_optimizer_state = options_.keep_optimizer_state;
  const int64_t live_before = CountingCpuAllocator::LiveBytes();
  CountingCpuAllocator::ResetPeak();
  ResetPeakRss();
  config.cancel = cancel;
  ASSIGN_OR_RETURN(const PhaseReport report, model_->Train(data_, config));
  const int64_t peak = CountingCpuAllocator::PeakBytes() - live_before;
  double accuracy = report.accuracy;
  if (held_out_.size() > 0) {
    // In batches of the task's size: evaluation never outgrows training.
    ASSIGN_OR_RETURN(accuracy, model_->Evaluate(held_out_, std::max(1, config.batch_size)));
  }

  TaskResult result;
  result.round_id = task.round_id;
  result.task_id = task.task_id;
  result.model_version = task.model_version;
  result.samples = static_cast<uint64_t>(data_.size());
  result.loss = static_cast<float>(report.loss);
  result.accuracy = static_cast<float>(accuracy);
  result.peak_memory_bytes = peak > 0 ? static_cast<uint64_t>(peak) : 0;
  result.process_peak_rss_bytes = static_cast<uint64_t>(PeakRssBytes());
  const std::vector<ModelShard> after = model_->ExportShards();
  for (size_t i = 0; i < after.size(); ++i) {
    if (after[i].layer < static_cast<int>(task.trainable_from)) continue;
    std::vector<float> delta(after[i].values.size());
    bool changed = false;
    for (size_t k = 0; k < delta.size(); ++k) {
      delta[k] = after[i].values[k] - before[i].values[k];
      changed |= delta[k] != 0.0f;
    }
    if (!changed) continue;
    WireTensor t;
    t.layer = static_cast<uint32_t>(after[i].layer);
    t.name = after[i].name;
    t.shape = after[i].shape;
    UpdateSpec spec;
    if (static_cast<int64_t>(delta.size()) < options_.small_tensor_elements) {
      spec.codec = Codec::kFp32;
    } else {
      spec.codec = task.uplink_codec;
      spec.bits = task.uplink_bits;
      spec.slices = t.shape.size() >= 2 ? t.shape[0] : 1;
    }
    std::vector<float>* residual =
        spec.codec == Codec::kSignEf ? &feedback_.Residual(t.name, delta.size()) : nullptr;
    RETURN_IF_ERROR(Annotate(EncodeUpdate(delta, spec, task.seed + i, residual, &t),
                             absl::StrCat("encoding the update of ", t.name)));
    result.updates.push_back(std::move(t));
  }
  // A residual that cannot be saved (full disk) does not spoil the update:
  // the file keeps the last good residual, this one lives on in memory, and
  // the agent says so.
  residual_error_ = options_.residual_path.empty()
                        ? absl::OkStatus()
                        : feedback_.Save(options_.residual_path, options_.env);
  result.seconds = static_cast<float>(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return result;
}

}  // namespace fedge
