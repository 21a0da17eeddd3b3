#include "models/quant/phase_trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "gtest/gtest.h"

namespace fedge {
namespace {

class PhaseTrainerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    absl::StatusOr<Dataset> train =
        LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain, {1000, 0});
    ASSERT_TRUE(train.ok()) << train.status();
    train_ = new Dataset(*train);
  }
  static void TearDownTestSuite() { delete train_; }

  static std::vector<at::Tensor> Copy(const std::vector<at::Tensor>& ts) {
    std::vector<at::Tensor> out;
    for (const at::Tensor& t : ts) out.push_back(t.detach().clone());
    return out;
  }
  static bool Same(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!at::equal(a[i], b[i])) return false;
    }
    return true;
  }

  static Dataset* train_;
};

Dataset* PhaseTrainerTest::train_ = nullptr;

TEST_F(PhaseTrainerTest, PretrainCalibratesThenFreezesQuantizers) {
  QuantNet net(*MakeQuantArch("fmnist-mlp"), QuantNetOptions());
  PhaseConfig config;
  config.phase = Phase::kPretrain;
  config.steps = 1;
  config.calibrate = true;
  config.pretrain_bits = 4;
  ASSERT_TRUE(RunPhase(net, *train_, config).ok());
  // Calibrated at 4 bits: 7 signed weight levels, 15 unsigned activation levels.
  for (const LayerBits& b : net.Bits()) {
    for (int w : b.weight_bits) EXPECT_EQ(w, 4);
  }
  const auto quantizers = Copy(net.QuantizerParameters());
  config.steps = 60;
  config.calibrate = false;
  absl::StatusOr<PhaseReport> report = RunPhase(net, *train_, config);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(Same(quantizers, net.QuantizerParameters()));
  EXPECT_GT(report->accuracy, 0.5);
  EXPECT_FALSE(report->met_budget);
}

TEST_F(PhaseTrainerTest, LearnPrecisionUpdatesQuantizersEveryNthStepAndShrinks) {
  QuantNet net(*MakeQuantArch("fmnist-mlp"), QuantNetOptions());
  PhaseConfig pre;
  pre.steps = 30;
  pre.calibrate = true;
  pre.pretrain_bits = 8;
  ASSERT_TRUE(RunPhase(net, *train_, pre).ok());
  const double before_kb = net.Size().weight_kb;

  PhaseConfig learn;
  learn.phase = Phase::kLearnPrecision;
  learn.quantizer_every = 5;
  learn.steps = 4;  // fewer than the interval: no quantizer update yet
  learn.quantizer_learning_rate = 5e-2;
  learn.budget.weight_kb = before_kb / 4;  // ask for 2-bit weights on average
  const auto quantizers = Copy(net.QuantizerParameters());
  ASSERT_TRUE(RunPhase(net, *train_, learn).ok());
  EXPECT_TRUE(Same(quantizers, net.QuantizerParameters()));

  learn.steps = 400;
  absl::StatusOr<PhaseReport> report = RunPhase(net, *train_, learn);
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_FALSE(Same(quantizers, net.QuantizerParameters()));
  std::printf("weights %.1f kB -> %.1f kB (%.2f bits), met budget %d\n", before_kb,
              report->size.weight_kb, report->size.mean_weight_bits, report->met_budget);
  EXPECT_LT(report->size.weight_kb, 0.75 * before_kb);
  EXPECT_GT(report->penalty, -1e-12);
}

// Quantizer updates are relative: one step moves every d and xmax by a
// factor of at most about exp(learning rate), however small the step is. (A
// plain Adam step of 1e-2 would add ~1e-2 to an 8-bit weight step of ~1e-3.)
TEST_F(PhaseTrainerTest, QuantizerUpdatesAreRelative) {
  QuantNet net(*MakeQuantArch("fmnist-mlp"), QuantNetOptions());
  PhaseConfig pre;
  pre.steps = 5;
  pre.calibrate = true;
  ASSERT_TRUE(RunPhase(net, *train_, pre).ok());
  const auto before = Copy(net.QuantizerParameters());
  PhaseConfig learn;
  learn.phase = Phase::kLearnPrecision;
  learn.steps = 1;
  learn.quantizer_learning_rate = 1e-2;
  learn.budget.weight_kb = net.Size().weight_kb / 4;
  ASSERT_TRUE(RunPhase(net, *train_, learn).ok());
  const auto after = net.QuantizerParameters();
  bool moved = false;
  for (size_t i = 0; i < before.size(); ++i) {
    const at::Tensor ratio = after[i] / before[i];
    EXPECT_LE(ratio.max().item<double>(), std::exp(0.0101)) << i;
    EXPECT_GE(ratio.min().item<double>(), std::exp(-0.0101)) << i;
    moved |= !at::equal(after[i], before[i]);
  }
  EXPECT_TRUE(moved);
  // The seed's update on d itself: the same step moves the weights' d by
  // far more than 1%.
  QuantNet linear(*MakeQuantArch("fmnist-mlp"), QuantNetOptions());
  ASSERT_TRUE(RunPhase(linear, *train_, pre).ok());
  const at::Tensor d0 = linear.QuantizerParameters()[0].detach().clone();
  learn.quantizer_log_scale = false;
  ASSERT_TRUE(RunPhase(linear, *train_, learn).ok());
  const at::Tensor d1 = linear.QuantizerParameters()[0];
  EXPECT_GT((d1 / d0 - 1).abs().max().item<double>(), 0.5);
}

// Activation bit-widths reach their budget: under the relative penalty an
// activation budget of a quarter of the 8-bit size pulls them down within a
// few hundred steps. The image's quantizer is fixed input under the
// reference accounting and learns under the project's.
TEST_F(PhaseTrainerTest, ActivationsLearnTowardTheirBudget) {
  for (SizeAccounting accounting : {SizeAccounting::kReference, SizeAccounting::kProject}) {
    QuantArch arch = *MakeQuantArch("fmnist-mlp");
    arch.accounting = accounting;
    QuantNet net(arch, QuantNetOptions());
    PhaseConfig pre;
    pre.steps = 30;
    pre.calibrate = true;
    ASSERT_TRUE(RunPhase(net, *train_, pre).ok());
    const SizeReport before = net.Size();
    const at::Tensor image_step = net.QuantizerParameters()[2].detach().clone();
    PhaseConfig learn;
    learn.phase = Phase::kLearnPrecision;
    learn.steps = 300;
    learn.budget.weight_kb = before.weight_kb / 2;
    learn.budget.activation_kb = before.activation_kb / 4;
    absl::StatusOr<PhaseReport> report = RunPhase(net, *train_, learn);
    ASSERT_TRUE(report.ok()) << report.status();
    std::printf("%s: activations %.3f kB (%.2f bits) -> %.3f kB (%.2f bits), met budget %d\n",
                SizeAccountingName(accounting), before.activation_kb,
                before.mean_activation_bits, report->size.activation_kb,
                report->size.mean_activation_bits, report->met_budget);
    EXPECT_LT(report->size.activation_kb, 0.6 * before.activation_kb);
    EXPECT_EQ(at::equal(net.QuantizerParameters()[2], image_step),
              accounting == SizeAccounting::kReference);
  }
}

TEST_F(PhaseTrainerTest, FinetuneFreezesBitWidths) {
  QuantNet net(*MakeQuantArch("fmnist-mlp"), QuantNetOptions());
  PhaseConfig pre;
  pre.steps = 20;
  pre.calibrate = true;
  ASSERT_TRUE(RunPhase(net, *train_, pre).ok());
  const auto bits = net.Bits();
  const auto quantizers = Copy(net.QuantizerParameters());
  const auto weights = Copy(net.WeightParameters());
  PhaseConfig fine;
  fine.phase = Phase::kFinetune;
  fine.steps = 40;
  ASSERT_TRUE(RunPhase(net, *train_, fine).ok());
  EXPECT_TRUE(Same(quantizers, net.QuantizerParameters()));
  EXPECT_FALSE(Same(weights, net.WeightParameters()));
  const auto after = net.Bits();
  for (size_t i = 0; i < bits.size(); ++i) EXPECT_EQ(bits[i].weight_bits, after[i].weight_bits);
}

// A cosine rate starts at the configured rate (one step: the same update as a
// constant rate) and decays over the call's steps, so four steps move the
// weights less than four at the full rate.
TEST_F(PhaseTrainerTest, ACosineRateDecaysOverTheCallsSteps) {
  QuantNetOptions options;
  options.quantize = false;
  auto moved = [&](LrSchedule schedule, int64_t steps) {
    QuantNet net(*MakeQuantArch("fmnist-mlp"), options);
    const auto before = Copy(net.WeightParameters());
    PhaseConfig config;
    config.steps = steps;
    config.learning_rate = 1e-2;
    config.lr_schedule = schedule;
    EXPECT_TRUE(RunPhase(net, *train_, config).ok());
    const auto after = net.WeightParameters();
    double sq = 0;
    for (size_t i = 0; i < before.size(); ++i) {
      sq += (after[i] - before[i]).pow(2).sum().item<double>();
    }
    return std::sqrt(sq);
  };
  EXPECT_DOUBLE_EQ(moved(LrSchedule::kCosine, 1), moved(LrSchedule::kConstant, 1));
  const double cosine = moved(LrSchedule::kCosine, 4);
  const double constant = moved(LrSchedule::kConstant, 4);
  EXPECT_GT(cosine, 0);
  EXPECT_LT(cosine, 0.9 * constant);
}

TEST_F(PhaseTrainerTest, FinetuneProjectsAModelOverItsBudgetOntoIt) {
  QuantArch arch = *MakeQuantArch("fmnist-cnn");
  QuantNet net(arch, QuantNetOptions());
  PhaseConfig pre;
  pre.steps = 5;
  pre.calibrate = true;
  pre.pretrain_bits = 6;
  ASSERT_TRUE(RunPhase(net, *train_, pre).ok());
  const SizeReport before = net.Size();
  PhaseConfig fine;
  fine.phase = Phase::kFinetune;
  fine.steps = 5;
  // 2-bit weights (every signed slice at its floor) and 1.5-bit activations.
  fine.budget.weight_kb = arch.WeightBudgetKb(2);
  fine.budget.activation_kb = arch.ActivationBudgetKb(1.5);
  const std::vector<at::Tensor> start = net.Snapshot();
  absl::StatusOr<PhaseReport> report = RunPhase(net, *train_, fine);
  ASSERT_TRUE(report.ok()) << report.status();
  const SizeReport after = net.Size();
  // fc1 (95% of the weights) is cut to a binary slice, which covers the
  // excess at once; the room it leaves goes back to the convolutions.
  const std::vector<LayerBits> bits = net.Bits();
  EXPECT_EQ(bits[2].weight_bits[0], 1);
  for (int b : bits[1].weight_bits) EXPECT_GT(b, 2);
  EXPECT_LE(after.weight_kb, fine.budget.weight_kb * (1 + 1e-9));
  EXPECT_GT(report->refilled_weight_bits, 0);
  EXPECT_LE(after.activation_kb, fine.budget.activation_kb * (1 + 1e-9));
  EXPECT_LE(after.mean_activation_bits, 1.5 + 1e-9);
  EXPECT_GT(report->projected_weight_bits, 0);
  EXPECT_GT(report->projected_activation_bits, 0);
  EXPECT_LT(after.total_kb(), before.total_kb() / 2.5);
  // Within budget already: nothing taken, nothing moved.
  const std::vector<at::Tensor> quantizers = Copy(net.QuantizerParameters());
  report = RunPhase(net, *train_, fine);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->projected_weight_bits + report->projected_activation_bits, 0);
  EXPECT_TRUE(Same(quantizers, net.QuantizerParameters()));
  // Below 1 bit a weight: every slice ends binary, and the budget is missed.
  fine.budget.weight_kb = arch.WeightBudgetKb(0.5);
  QuantNet::Projection projection = net.ProjectToBudget(fine.budget);
  EXPECT_FALSE(projection.met);
  EXPECT_NEAR(net.Size().weight_kb, UniformSize(arch, 1, 8).weight_kb, 1e-9);
  // Without binary slices the same model stops at the signed floor of 2
  // bits, exactly the 2-bit budget.
  QuantNetOptions no_binary;
  no_binary.weight_config.binary_slices = false;
  QuantNet ternary(arch, no_binary);
  ternary.Restore(start);
  fine.budget.weight_kb = arch.WeightBudgetKb(2);
  projection = ternary.ProjectToBudget(fine.budget);
  EXPECT_TRUE(projection.met);
  EXPECT_NEAR(ternary.Size().weight_kb, UniformSize(arch, 2, 8).weight_kb, 1e-9);
  fine.budget.weight_kb = arch.WeightBudgetKb(1.5);
  projection = ternary.ProjectToBudget(fine.budget);
  EXPECT_FALSE(projection.met);
  EXPECT_EQ(projection.weight_cuts, 0);
}

TEST_F(PhaseTrainerTest, ProjectionCutsWhereTheLeastNoiseCoversTheExcess) {
  const QuantArch arch = *MakeQuantArch("fmnist-cnn");
  QuantNet net(arch, QuantNetOptions());
  PhaseConfig pre;
  pre.steps = 2;
  pre.calibrate = true;
  pre.pretrain_bits = 3;
  ASSERT_TRUE(RunPhase(net, *train_, pre).ok());
  // 100 bits over: the classifier's 128 inputs cover it with the least
  // noise; the 6,272 and 3,136 inputs of conv2 and fc1 keep their 3 bits.
  Budget budget;
  budget.activation_kb = net.Size().activation_kb - 100.0 / 8000;
  const QuantNet::Projection p = net.ProjectToBudget(budget);
  EXPECT_TRUE(p.met);
  EXPECT_EQ(p.activation_cuts, 1);
  const std::vector<LayerBits> bits = net.Bits();
  EXPECT_EQ(bits[1].activation_bits, 3);
  EXPECT_EQ(bits[2].activation_bits, 3);
  EXPECT_EQ(bits[3].activation_bits, 2);
  // 4,000 bits over: no one cut covers it; per bit saved the noise is the
  // same at equal bits, so cuts go on until it is covered, never below 1 bit.
  budget.activation_kb = net.Size().activation_kb - 4000.0 / 8000;
  EXPECT_TRUE(net.ProjectToBudget(budget).met);
  for (const LayerBits& b : net.Bits()) EXPECT_GE(b.activation_bits, 1);
}

TEST_F(PhaseTrainerTest, RejectsBadConfig) {
  QuantNet net(*MakeQuantArch("fmnist-mlp"), QuantNetOptions());
  PhaseConfig config;
  config.steps = 0;
  EXPECT_EQ(RunPhase(net, *train_, config).status().code(), absl::StatusCode::kInvalidArgument);
  config.steps = 1;
  config.quantizer_every = 0;
  EXPECT_FALSE(RunPhase(net, *train_, config).ok());
  EXPECT_FALSE(RunPhase(net, Dataset(), PhaseConfig()).ok());
}

}  // namespace
}  // namespace fedge
