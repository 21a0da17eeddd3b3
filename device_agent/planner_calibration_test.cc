// The shard planner's memory estimate against the peak the agent measures:
// real tasks (two training steps on Fashion-MNIST) for every trainable
// suffix of fmnist-cnn at a small and the default batch. The estimate must
// bound the measured peak (a board given a plan must not run out of its
// budget) and stay within 2.5x of it (or small boards get nothing).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>

#include "common/codec/update_codec.h"
#include "coordinator/shard_planner.h"
#include "device_agent/task_runner.h"
#include "gtest/gtest.h"
#include "models/memory/counting_allocator.h"
#include "models/data/dataset.h"
#include "models/quant/model_shards.h"
#include "models/quant/quant_net.h"

namespace fedge {
namespace {

TEST(PlannerCalibrationTest, EstimateBoundsTheMeasuredPeak) {
  CountingCpuAllocator::Install();
  ASSERT_TRUE(CountingCpuAllocator::Installed());
  at::set_num_threads(1);
  const QuantArch arch = *MakeQuantArch("fmnist-cnn");
  absl::StatusOr<Dataset> data = LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain, {512, 0});
  ASSERT_TRUE(data.ok()) << data.status();
  QuantNet net(arch, QuantNetOptions());
  net.Calibrate(data->images.slice(0, 0, 64), 8);
  std::vector<WireTensor> shards;
  for (const ModelShard& s : ExportShards(net.Named())) {
    WireTensor t;
    t.layer = static_cast<uint32_t>(s.layer);
    t.name = s.name;
    t.shape = s.shape;
    ASSERT_TRUE(EncodeUpdate(s.values, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
    shards.push_back(std::move(t));
  }
  TaskRunner runner(arch, *std::move(data), TaskRunnerOptions());
  uint64_t task_id = 0;
  std::printf("%-16s %4s %5s %12s %12s %6s\n", "phase", "from", "batch", "measured MB", "estimate MB",
              "ratio");
  for (Phase phase : {Phase::kPretrain, Phase::kLearnPrecision}) {
    for (int batch : {8, 64}) {
      for (int from = 0; from < static_cast<int>(arch.layers.size()); ++from) {
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
        const double estimate = static_cast<double>(QuantTrainingMemory(arch, from, batch));
        std::printf("%-16s %4d %5d %12.2f %12.2f %6.2f\n", PhaseName(phase), from, batch,
                    measured / 1048576, estimate / 1048576, estimate / measured);
        EXPECT_GT(measured, 0);
        EXPECT_LE(measured, estimate) << "from " << from << ", batch " << batch;
        EXPECT_LE(estimate, 2.5 * measured) << "from " << from << ", batch " << batch;
      }
    }
  }
}

}  // namespace
}  // namespace fedge
