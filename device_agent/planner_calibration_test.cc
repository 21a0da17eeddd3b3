// The shard planner's memory estimate against the peak the agent measures:
// real tasks (two training steps on Fashion-MNIST) for every trainable
// suffix at a small and the default batch, for a network of each family.
// The estimate must bound the measured peak (a board given a plan must not
// run out of its budget) and stay within a factor of it (or small boards get
// nothing): 2.5x for fmnist-cnn, 1.5x for the binary CNV.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>

#include "common/codec/update_codec.h"
#include "device_agent/task_runner.h"
#include "gtest/gtest.h"
#include "models/data/dataset.h"
#include "models/family/federated_model.h"
#include "models/memory/counting_allocator.h"

namespace fedge {
namespace {

void CheckEstimate(const std::string& name, const std::vector<Phase>& phases, double bound) {
  CountingCpuAllocator::Install();
  ASSERT_TRUE(CountingCpuAllocator::Installed());
  at::set_num_threads(1);
  const ModelSpec spec = *MakeModelSpec(name, std::nullopt);
  const int pad = *FashionMnistPadding(spec);
  absl::StatusOr<Dataset> data = LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain, {512, pad});
  ASSERT_TRUE(data.ok()) << data.status();
  std::unique_ptr<FederatedModel> initial = *FederatedModel::Create(spec);
  ASSERT_TRUE(initial->Initialize(Subset(*data, at::arange(64)), 8).ok());
  std::vector<WireTensor> shards;
  for (const ModelShard& s : initial->ExportShards()) {
    WireTensor t;
    t.layer = static_cast<uint32_t>(s.layer);
    t.name = s.name;
    t.shape = s.shape;
    ASSERT_TRUE(EncodeUpdate(s.values, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
    shards.push_back(std::move(t));
  }
  TaskRunner runner(*FederatedModel::Create(spec), *std::move(data), Dataset(), TaskRunnerOptions());
  uint64_t task_id = 0;
  std::printf("%-10s %-16s %4s %5s %12s %12s %6s\n", "model", "phase", "from", "batch",
              "measured MB", "estimate MB", "ratio");
  for (Phase phase : phases) {
    for (int batch : {8, 64}) {
      for (int from = 0; from < spec.layer_count(); ++from) {
        Task task;
        task.round_id = 1;
        task.task_id = ++task_id;
        task.phase = phase;
        // Learn precision: the activation quantizers learn on the first step,
        // when the float inputs are kept.
        task.hyper.quantizer_every = 1;
        task.hyper.penalty_scale = 1;
        task.hyper.batch_size = static_cast<uint32_t>(batch);
        task.hyper.local_steps = 2;
        task.trainable_from = static_cast<uint32_t>(from);
        task.uplink_codec = Codec::kSignEf;
        task.shards = shards;
        absl::StatusOr<TaskResult> result = runner.Run(task);
        ASSERT_TRUE(result.ok()) << result.status();
        const double measured = static_cast<double>(result->peak_memory_bytes);
        const double estimate = static_cast<double>(spec.TrainingMemory(from, batch));
        std::printf("%-10s %-16s %4d %5d %12.2f %12.2f %6.2f\n", name.c_str(), PhaseName(phase),
                    from, batch, measured / 1048576, estimate / 1048576, estimate / measured);
        EXPECT_GT(measured, 0);
        EXPECT_GT(result->process_peak_rss_bytes, result->peak_memory_bytes);
        EXPECT_LE(measured, estimate) << name << " from " << from << ", batch " << batch;
        EXPECT_LE(estimate, bound * measured) << name << " from " << from << ", batch " << batch;
      }
    }
  }
}

TEST(PlannerCalibrationTest, EstimateBoundsTheMeasuredPeakOfTheMixedPrecisionCnn) {
  CheckEstimate("fmnist-cnn", {Phase::kPretrain, Phase::kLearnPrecision}, 2.5);
}

TEST(PlannerCalibrationTest, EstimateBoundsTheMeasuredPeakOfTheBinaryCnv) {
  CheckEstimate("cnv", {Phase::kPretrain}, 1.5);
}

}  // namespace
}  // namespace fedge
