#include "models/quant/size_model.h"

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(QuantArchTest, ParameterCountsOfKnownNetworks) {
  // Published parameter counts (weights without biases and batch norm):
  // MobileNetV2 3.47M, EfficientNet-Lite0 4.63M, ResNet-18 11.68M.
  EXPECT_NEAR(MakeQuantArch("mobilenetv2")->weight_count(), 3.47e6, 0.03e6);
  EXPECT_NEAR(MakeQuantArch("efficientnet-lite0")->weight_count(), 4.63e6, 0.05e6);
  EXPECT_NEAR(MakeQuantArch("resnet18")->weight_count(), 11.68e6, 0.02e6);
  EXPECT_FALSE(MakeQuantArch("vgg").ok());
}

TEST(QuantArchTest, FmnistCnnShapes) {
  const QuantArch net = *MakeQuantArch("fmnist-cnn");
  ASSERT_EQ(net.layers.size(), 4u);
  EXPECT_EQ(net.layers[1].in_height, 14);
  EXPECT_EQ(net.layers[2].in_channels, 64 * 7 * 7);
  EXPECT_EQ(net.weight_count(), 9 * 32 + 9 * 32 * 64 + 3136 * 128 + 128 * 10);
  EXPECT_EQ(net.activation_elements(), 784 + 32 * 14 * 14 + 3136 + 128);
}

// A network small enough to count by hand: fmnist-mlp, 784-256-10.
TEST(SizeModelTest, PerLayerSizesByHand) {
  QuantArch mlp = *MakeQuantArch("fmnist-mlp");
  mlp.accounting = SizeAccounting::kProject;
  std::vector<LayerBits> bits = {{{3}, 8}, {{2}, 4}};
  const SizeReport r = *ComputeSize(mlp, bits);
  // fc1: 784*256 weights at 3 bits = 602112 bits = 75.264 kB;
  //      input 784 at 8 bits = 0.784 kB.
  // fc2: 2560 weights at 2 bits = 0.64 kB; input 256 at 4 bits = 0.128 kB.
  EXPECT_NEAR(r.layers[0].weight_kb, 75.264, 1e-9);
  EXPECT_NEAR(r.layers[0].activation_kb, 0.784, 1e-9);
  EXPECT_NEAR(r.layers[1].weight_kb, 0.64, 1e-9);
  EXPECT_NEAR(r.layers[1].activation_kb, 0.128, 1e-9);
  EXPECT_NEAR(r.weight_kb, 75.904, 1e-9);
  EXPECT_NEAR(r.mean_weight_bits, (602112.0 + 5120) / 203264, 1e-9);
}

// The reference implementation's accounting: the image is not counted, the
// classifier's 10 float biases are.
TEST(SizeModelTest, ReferenceAccountingByHand) {
  const QuantArch mlp = *MakeQuantArch("fmnist-mlp");
  ASSERT_EQ(mlp.accounting, SizeAccounting::kReference);
  EXPECT_EQ(mlp.bias_count(), 10);
  EXPECT_EQ(mlp.counted_activation_elements(), 256);
  EXPECT_FALSE(mlp.counts_input(0));
  const SizeReport r = *ComputeSize(mlp, {{{3}, 8}, {{2}, 4}});
  EXPECT_NEAR(r.layers[0].activation_kb, 0.0, 1e-12);
  EXPECT_NEAR(r.layers[1].weight_kb, (5120.0 + 10 * 32) / 8000, 1e-9);
  EXPECT_NEAR(r.weight_kb, (602112.0 + 5120 + 320) / 8000, 1e-9);
  EXPECT_NEAR(r.activation_kb, 0.128, 1e-9);
  EXPECT_NEAR(r.mean_weight_bits, (602112.0 + 5120 + 320) / (203264 + 10), 1e-9);
  EXPECT_NEAR(r.mean_activation_bits, 4.0, 1e-12);
  // Budgets count the same things: 2 bits over 203,264 weights plus the
  // float bias, 2 bits over 256 activations; uniform 2 bits meets both.
  EXPECT_NEAR(mlp.WeightBudgetKb(2), (2.0 * 203264 + 32 * 10) / 8000, 1e-9);
  EXPECT_NEAR(UniformSize(mlp, 2, 2).weight_kb, mlp.WeightBudgetKb(2), 1e-9);
  EXPECT_NEAR(mlp.ActivationBudgetKb(2), 2.0 * 256 / 8000, 1e-9);
  EXPECT_EQ(*ParseSizeAccounting("project"), SizeAccounting::kProject);
  EXPECT_FALSE(ParseSizeAccounting("paper").ok());
}

TEST(SizeModelTest, PerChannelBitsOfConvolutions) {
  const QuantArch cnn = *MakeQuantArch("fmnist-cnn");
  SizeReport uniform = UniformSize(cnn, 4, 4);
  std::vector<LayerBits> bits;
  for (const auto& l : cnn.layers) bits.push_back({std::vector<int>(l.slices(), 4), 4});
  bits[0].weight_bits[0] = 8;  // one channel of 9 weights at 8 bits: +36 bits
  const SizeReport mixed = *ComputeSize(cnn, bits);
  EXPECT_NEAR(mixed.weight_kb - uniform.weight_kb, 36.0 / 8000, 1e-12);
  bits[0].weight_bits.pop_back();
  EXPECT_FALSE(ComputeSize(cnn, bits).ok());
}

TEST(SizeModelTest, PenaltyAndRamp) {
  EXPECT_DOUBLE_EQ(PenaltyRamp(0, 1000), 0.01);
  EXPECT_DOUBLE_EQ(PenaltyRamp(250, 1000), 0.01 + 0.99 * 0.5);
  EXPECT_DOUBLE_EQ(PenaltyRamp(500, 1000), 1.0);
  EXPECT_DOUBLE_EQ(PenaltyRamp(900, 1000), 1.0);
  Budget budget{100, 10, 1e-4, 1e-4, PenaltyForm::kAbsolute};
  EXPECT_DOUBLE_EQ(SizePenalty(90, 5, budget, 1.0), 0.0);
  EXPECT_DOUBLE_EQ(SizePenalty(120, 5, budget, 1.0), 1e-4 * 400);
  EXPECT_DOUBLE_EQ(SizePenalty(120, 13, budget, 0.5), 0.5 * (1e-4 * 400 + 1e-4 * 9));
}

// The relative excess pulls a network 20% over its budget the same way
// whether the budget is 10 kB or 10 MB; the absolute one does not.
TEST(SizeModelTest, RelativePenaltyIsScaleFree) {
  Budget small{10, 1, DefaultLambda(PenaltyForm::kRelative),
               DefaultLambda(PenaltyForm::kRelative), PenaltyForm::kRelative};
  Budget large{10000, 1000, small.lambda_w, small.lambda_a, PenaltyForm::kRelative};
  EXPECT_DOUBLE_EQ(SizePenalty(12, 1.1, small, 1.0), 0.04 + 0.01);
  EXPECT_NEAR(SizePenalty(12000, 1100, large, 1.0), SizePenalty(12, 1.1, small, 1.0), 1e-12);
  EXPECT_DOUBLE_EQ(SizePenalty(9, 0.5, small, 1.0), 0.0);
  small.form = large.form = PenaltyForm::kAbsolute;
  small.lambda_w = small.lambda_a = large.lambda_w = large.lambda_a = 1e-4;
  EXPECT_GT(SizePenalty(12000, 1100, large, 1.0), 1e5 * SizePenalty(12, 1.1, small, 1.0));
  EXPECT_EQ(*ParsePenaltyForm("absolute"), PenaltyForm::kAbsolute);
  EXPECT_FALSE(ParsePenaltyForm("quadratic").ok());
}

}  // namespace
}  // namespace fedge
