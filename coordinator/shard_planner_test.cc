#include "coordinator/shard_planner.h"

#include "gtest/gtest.h"
#include "models/memory/memory_model.h"

namespace fedge {
namespace {

AgentRecord WithBudget(int64_t bytes) {
  AgentRecord a;
  a.device_id = "board";
  a.registration.memory_budget_bytes = static_cast<uint64_t>(bytes);
  return a;
}

TEST(ShardPlannerTest, EstimateShrinksWithFewerTrainableLayersAndSmallerBatches) {
  const QuantArch arch = *MakeQuantArch("fmnist-cnn");
  const int layers = static_cast<int>(arch.layers.size());
  for (int from = 1; from < layers; ++from) {
    EXPECT_LT(QuantTrainingMemory(arch, from, 64), QuantTrainingMemory(arch, from - 1, 64));
  }
  EXPECT_LT(QuantTrainingMemory(arch, layers - 1, 8), QuantTrainingMemory(arch, layers - 1, 64));
  // By hand for the head alone at batch 1: 2 MB scratch, frozen weights at
  // 12 B, fc2's 1290 weights at 52 B, its saves, and conv1's transients.
  int64_t frozen = 0;
  for (int i = 0; i < layers - 1; ++i) frozen += 12 * arch.layers[i].weight_count();
  const QuantLayerSpec& fc2 = arch.layers.back();
  const int64_t conv1_out = 32 * 28 * 28;
  EXPECT_EQ(QuantTrainingMemory(arch, layers - 1, 1),
            (2 << 20) + frozen + 52 * fc2.weight_count() + fc2.input_elements() * 9 / 8 + 12 * 10 +
                4 * (28 * 28 + 2 * conv1_out));
}

TEST(ShardPlannerTest, PlansTheLargestSuffixThatFitsThenSmallerBatchesThenNothing) {
  const QuantArch arch = *MakeQuantArch("fmnist-cnn");
  const int last = static_cast<int>(arch.layers.size()) - 1;
  const ShardPlanner planner = MakeMemoryPlanner(*MakeModelSpec("fmnist-cnn", std::nullopt), 64);
  // Everything fits.
  std::optional<ShardPlan> plan = planner(WithBudget(int64_t{1} << 30));
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->trainable_from, 0u);
  EXPECT_EQ(plan->batch_size, 0u);
  // Exactly the estimate of a suffix: that suffix.
  for (int from = 0; from <= last; ++from) {
    plan = planner(WithBudget(QuantTrainingMemory(arch, from, 64)));
    ASSERT_TRUE(plan);
    EXPECT_EQ(plan->trainable_from, static_cast<uint32_t>(from));
  }
  // Below the head at 64: the head at a smaller batch.
  plan = planner(WithBudget(QuantTrainingMemory(arch, last, 16)));
  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->trainable_from, static_cast<uint32_t>(last));
  EXPECT_EQ(plan->batch_size, 16u);
  // Below the head at the smallest batch: nothing.
  EXPECT_FALSE(planner(WithBudget(QuantTrainingMemory(arch, last, kMinPlanBatch) - 1)));
  EXPECT_FALSE(planner(WithBudget(0)));
}

TEST(ShardPlannerTest, PlansBinaryNetworksByTheirOwnEstimate) {
  const ModelSpec cnv = *MakeModelSpec("cnv", std::nullopt);
  const ShardPlanner planner = MakeMemoryPlanner(cnv, 64);
  const int last = cnv.layer_count() - 1;
  for (int from = 0; from <= last; ++from) {
    EXPECT_EQ(cnv.TrainingMemory(from, 64), BinaryTrainingMemory(cnv.binary, from, 64));
    // The longest suffix within the budget (layers whose estimate is the
    // same, a pool and its neighbour, go together).
    std::optional<ShardPlan> plan = planner(WithBudget(cnv.TrainingMemory(from, 64)));
    ASSERT_TRUE(plan);
    EXPECT_LE(plan->trainable_from, static_cast<uint32_t>(from));
    EXPECT_EQ(cnv.TrainingMemory(static_cast<int>(plan->trainable_from), 64),
              cnv.TrainingMemory(from, 64));
  }
  EXPECT_FALSE(planner(WithBudget(cnv.TrainingMemory(last, kMinPlanBatch) - 1)));
}

}  // namespace
}  // namespace fedge
