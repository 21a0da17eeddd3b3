#include "models/memory/memory_model.h"

#include "gtest/gtest.h"

namespace fedge {
namespace {

// MLP on a 1x2x2 input: fc1 4->256, fc2..fc4 256->256, fc5 256->10.
ArchSpec TinyMlp() {
  absl::StatusOr<ArchSpec> mlp = MakeArch("mlp", {1, 2, 2});
  EXPECT_TRUE(mlp.ok());
  return *mlp;
}

TEST(MemoryModelTest, StandardColumnByHand) {
  const MemoryModel m = ModelTrainingMemory(TinyMlp(), 2, StandardTrainingBits());
  // weights: (1024 + 3 * 65536 + 2560) * (32 * 4) / 8
  EXPECT_EQ(m.weight_state_bytes, 200192 * 16);
  // inputs per sample 4 + 4 * 256 = 1028; batch 2; 32 bits
  EXPECT_EQ(m.activation_bytes, 1028 * 2 * 4);
  // largest input 256 * 2, two 32-bit buffers
  EXPECT_EQ(m.grad_buffer_bytes, 512 * 8);
  EXPECT_EQ(m.total_bytes(), 200192 * 16 + 8224 + 4096);
  ASSERT_EQ(m.layers.size(), 5u);
  EXPECT_EQ(m.layers[0].name, "fc1");
  EXPECT_EQ(m.layers[0].weight_state_bytes, 1024 * 16);
}

TEST(MemoryModelTest, MemorySavingColumnByHand) {
  const MemoryModel m =
      ModelTrainingMemory(TinyMlp(), 2, MemorySavingTrainingBits());
  // 16 + 1 + 16 + 16 = 49 bits per weight
  EXPECT_EQ(m.weight_state_bytes,
            (1024 * 49 + 7) / 8 + 3 * (65536 * 49 / 8) + 2560 * 49 / 8);
  // first layer keeps its real input: 4 * 2 * 4 bytes; others 1 bit
  EXPECT_EQ(m.activation_bytes, 32 + 4 * (512 / 8));
  EXPECT_EQ(m.grad_buffer_bytes, 512 * 32 / 8);

  const MemoryModel pow2 =
      ModelTrainingMemory(TinyMlp(), 2, MemorySavingTrainingBits(true));
  EXPECT_EQ(pow2.grad_buffer_bytes, 512 * 21 / 8);
}

TEST(MemoryModelTest, PaperConventionsCountTheImageAtOneBitAndDxAt21) {
  const MemoryModel project = ModelTrainingMemory(TinyMlp(), 2, MemorySavingTrainingBits());
  const MemoryModel paper = ModelTrainingMemory(TinyMlp(), 2, PaperTrainingBits());
  EXPECT_EQ(paper.weight_state_bytes, project.weight_state_bytes);
  // the image: 4 values x 2 samples at 1 bit (1 byte) instead of 32 bytes
  EXPECT_EQ(paper.activation_bytes, 1 + 4 * (512 / 8));
  EXPECT_EQ(paper.grad_buffer_bytes, 512 * 21 / 8);
}

TEST(MemoryModelTest, CnvRatioIsInThePapersRange) {
  absl::StatusOr<ArchSpec> cnv = MakeArch("cnv", {3, 32, 32});
  ASSERT_TRUE(cnv.ok());
  const double standard =
      ModelTrainingMemory(*cnv, 100, StandardTrainingBits()).total_bytes();
  const double saving =
      ModelTrainingMemory(*cnv, 100, MemorySavingTrainingBits()).total_bytes();
  // The paper models 3.6-4.2x for its networks.
  EXPECT_GT(standard / saving, 3.0);
  EXPECT_LT(standard / saving, 6.0);
}

}  // namespace
}  // namespace fedge
