#include "models/bnn/binary_net.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <vector>

#include "gtest/gtest.h"
#include "models/kernels/binary_conv.h"
#include "models/memory/counting_allocator.h"
#include "models/data/dataset.h"
#include "models/bnn/standard_net.h"
#include "models/bnn/trainer.h"

namespace fedge {
namespace {

class BinaryNetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    CountingCpuAllocator::Install();
    at::set_num_threads(1);
  }

  static ArchSpec Cnv() {
    absl::StatusOr<ArchSpec> cnv = MakeArch("cnv", {1, 32, 32});
    EXPECT_TRUE(cnv.ok());
    return *cnv;
  }

  // Allocator bytes that one training-mode forward leaves live, the logits
  // excluded: what autograd holds for backward.
  static int64_t HeldAfterForward(TrainableNet& net, const at::Tensor& x) {
    const int64_t before = CountingCpuAllocator::LiveBytes();
    const at::Tensor logits = net.Forward(x, true);
    const int64_t held = CountingCpuAllocator::LiveBytes() - before -
                         static_cast<int64_t>(logits.nbytes());
    logits.sum().backward();
    net.Step();
    return held;
  }
};

// Pins what CNV at batch 8 on 1x32x32 holds for backward. Per layer: the
// first conv keeps its real float input (32768 B); every other conv and fc
// keeps 2 bits per input element (sign + mask); every l1 batch norm keeps
// 1 bit per output element plus 4 bytes per channel; each pool keeps 2 bits
// per output element. A change of more than 2% is a memory regression (or
// an improvement to re-pin).
TEST_F(BinaryNetTest, LedgerPinsCnvSavedBytes) {
  MemoryLedger ledger;
  MemorySavingNet net(Cnv(), MemorySavingOptions(), &ledger);
  const at::Tensor x = at::randn({8, 1, 32, 32});
  const at::Tensor logits = net.Forward(x, true);
  const int64_t saved = ledger.saved_bytes();
  constexpr int64_t kPinned = 358066;
  EXPECT_NEAR(static_cast<double>(saved), kPinned, 0.02 * kPinned);
  const auto layers = ledger.layers();
  EXPECT_EQ(layers.at("conv1").held, 8 * 32 * 32 * 4);
  EXPECT_EQ(layers.at("conv2").held, 2 * 8 * 64 * 30 * 30 / 8);
  EXPECT_EQ(layers.at("pool1").held, 8 * 64 * 14 * 14 * 2 / 8);
  logits.sum().backward();
  EXPECT_EQ(ledger.saved_bytes(), 0);
  EXPECT_EQ(ledger.peak_saved_bytes(), saved);
}

TEST_F(BinaryNetTest, NothingIsSavedBehindTheLedgersBack) {
  MemoryLedger ledger;
  MemorySavingNet net(Cnv(), MemorySavingOptions(), &ledger);
  const at::Tensor x = at::randn({8, 1, 32, 32});
  HeldAfterForward(net, x);  // first step allocates optimizer buffers
  ledger.ResetPeaks();
  const int64_t held = HeldAfterForward(net, x);
  // The ledger also counts the batch the first layer keeps, which was live
  // before the forward pass.
  const int64_t ledger_bytes = ledger.peak_saved_bytes() - x.nbytes();
  EXPECT_NEAR(static_cast<double>(held), ledger_bytes, 0.01 * ledger_bytes)
      << "allocator " << held << " vs ledger " << ledger_bytes;
}

TEST_F(BinaryNetTest, SavedActivationsAtLeast24xSmallerThanStandard) {
  const at::Tensor x = at::randn({8, 1, 32, 32});
  MemoryLedger ledger;
  MemorySavingNet saving(Cnv(), MemorySavingOptions(), &ledger);
  StandardNet standard(Cnv(), StandardOptions());
  HeldAfterForward(saving, x);
  HeldAfterForward(standard, x);
  const double ours = HeldAfterForward(saving, x);
  const double theirs = HeldAfterForward(standard, x);
  std::printf("held for backward: standard %.0f B, memory-saving %.0f B, %.1fx\n",
              theirs, ours, theirs / ours);
  EXPECT_GE(theirs / ours, 24.0);
}

TEST_F(BinaryNetTest, OptionsChangeStateBytes) {
  const ArchSpec arch = Cnv();
  const int64_t weights = arch.weight_count();
  MemorySavingOptions compact;
  MemorySavingOptions wide;
  wide.half_latent_weights = false;
  wide.sign_weight_grads = false;
  wide.half_optimizer_state = false;
  MemorySavingNet a(arch, compact, nullptr);
  MemorySavingNet b(arch, wide, nullptr);
  const at::Tensor x = at::randn({4, 1, 32, 32});
  HeldAfterForward(a, x);
  HeldAfterForward(b, x);
  // Latent weights 2 vs 4 bytes, moments 2+2 vs 4+4, dW 1 bit vs 4 bytes.
  // Every layer's l1 batch norm adds a float32 beta (with float32 Adam
  // moments and gradient) and two float32 running statistics per channel.
  const int64_t channels = 64 + 64 + 128 + 128 + 256 + 256 + 512 + 512 + 10;
  EXPECT_EQ(a.StateBytes(StateKind::kWeights), 2 * weights + 12 * channels);
  EXPECT_EQ(b.StateBytes(StateKind::kWeights), 4 * weights + 12 * channels);
  EXPECT_EQ(a.StateBytes(StateKind::kOptimizer), 4 * weights + 8 * channels);
  EXPECT_EQ(b.StateBytes(StateKind::kOptimizer), 8 * weights + 8 * channels);
  // Packed signs round up to whole bytes per layer, plus one float scale.
  EXPECT_NEAR(a.StateBytes(StateKind::kWeightGrads),
              weights / 8.0 + 4 * channels + 4 * 9, 9);
  EXPECT_EQ(b.StateBytes(StateKind::kWeightGrads), 4 * weights + 4 * channels);
}

// A short real training run on a slice of Fashion-MNIST: both trainers must
// learn well above chance (10%).
TEST_F(BinaryNetTest, BothTrainersLearnFashionMnist) {
  absl::StatusOr<Dataset> train =
      LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain, {2000, 0});
  absl::StatusOr<Dataset> test =
      LoadFashionMnist(kFashionMnistDir, DataSplit::kTest, {1000, 0});
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_TRUE(test.ok()) << test.status();
  absl::StatusOr<ArchSpec> mlp = MakeArch("mlp", {1, 28, 28});
  ASSERT_TRUE(mlp.ok());
  TrainOptions options;
  options.epochs = 3;
  options.batch_size = 50;

  MemoryLedger ledger;
  MemorySavingNet saving(*mlp, MemorySavingOptions(), &ledger);
  // Every memory-saving option off: float32 weights, gradients and moments
  // through the same ops.
  MemorySavingOptions wide;
  wide.half_latent_weights = false;
  wide.sign_weight_grads = false;
  wide.half_optimizer_state = false;
  wide.grad_x = GradXPrecision::kFloat32;
  MemorySavingNet saving_wide(*mlp, wide, nullptr);
  StandardNet standard(*mlp, StandardOptions());
  for (TrainableNet* net : {static_cast<TrainableNet*>(&saving),
                            static_cast<TrainableNet*>(&saving_wide),
                            static_cast<TrainableNet*>(&standard)}) {
    double first_loss = 0;
    absl::StatusOr<TrainReport> report =
        Train(*net, *train, options, [&](const EpochProgress& p) {
          if (p.epoch == 1) first_loss = p.loss;
        });
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_LT(report->loss, first_loss) << net->name();
    EXPECT_GT(report->held_for_backward_bytes, 0);
    absl::StatusOr<double> accuracy = Evaluate(*net, *test);
    ASSERT_TRUE(accuracy.ok());
    std::printf("%s: test accuracy %.3f\n", net->name().c_str(), *accuracy);
    EXPECT_GT(*accuracy, 0.6) << net->name();
  }
}

// The kernels' integer arithmetic is exact and every float sum runs in a
// fixed order, so every instruction-set path trains CNV to the same bits.
TEST_F(BinaryNetTest, CnvTrainsIdenticallyOnEveryKernelPath) {
  absl::StatusOr<Dataset> train =
      LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain, {300, 32});
  ASSERT_TRUE(train.ok()) << train.status();
  absl::StatusOr<ArchSpec> cnv = MakeArch("cnv", {1, 32, 32});
  ASSERT_TRUE(cnv.ok());
  TrainOptions options;
  options.batch_size = 100;
  std::vector<float> first_logits;
  for (KernelPath path : SupportedKernelPaths()) {
    SCOPED_TRACE(KernelPathName(path));
    ASSERT_TRUE(SetKernelPath(path));
    MemorySavingNet net(*cnv, MemorySavingOptions(), nullptr);
    ASSERT_TRUE(Train(net, *train, options).ok());
    const at::Tensor logits =
        net.Forward(train->Range(0, 20), /*training=*/false).contiguous();
    std::vector<float> values(logits.data_ptr<float>(),
                              logits.data_ptr<float>() + logits.numel());
    if (first_logits.empty()) {
      first_logits = values;
    } else {
      EXPECT_EQ(values, first_logits);
    }
  }
  SetKernelPath(SupportedKernelPaths().back());
}

// CNV on the bit kernels learns like CNV on float convolutions of the same
// +-1 values (the path before the kernels), from the same start.
TEST_F(BinaryNetTest, BitKernelsLearnLikeFloatConvolutions) {
  absl::StatusOr<Dataset> train =
      LoadFashionMnist(kFashionMnistDir, DataSplit::kTrain, {1200, 32});
  absl::StatusOr<Dataset> test =
      LoadFashionMnist(kFashionMnistDir, DataSplit::kTest, {1000, 32});
  ASSERT_TRUE(train.ok()) << train.status();
  ASSERT_TRUE(test.ok()) << test.status();
  absl::StatusOr<ArchSpec> cnv = MakeArch("cnv", {1, 32, 32});
  ASSERT_TRUE(cnv.ok());
  TrainOptions options;
  options.epochs = 2;
  options.batch_size = 50;
  double accuracy[2];
  for (int bits = 0; bits < 2; ++bits) {
    MemorySavingOptions saving;
    saving.bit_kernels = bits == 1;
    MemorySavingNet net(*cnv, saving, nullptr);
    ASSERT_TRUE(Train(net, *train, options).ok());
    absl::StatusOr<double> a = Evaluate(net, *test);
    ASSERT_TRUE(a.ok());
    accuracy[bits] = *a;
  }
  std::printf("CNV test accuracy: float convolutions %.3f, bit kernels %.3f\n", accuracy[0],
              accuracy[1]);
  EXPECT_GT(accuracy[1], 0.55);
  EXPECT_GT(accuracy[1], accuracy[0] - 0.05);
}

TEST_F(BinaryNetTest, TrainRejectsBadOptions) {
  absl::StatusOr<ArchSpec> mlp = MakeArch("mlp", {1, 4, 4});
  ASSERT_TRUE(mlp.ok());
  MemorySavingNet net(*mlp, MemorySavingOptions(), nullptr);
  Dataset empty;
  EXPECT_EQ(Train(net, empty, TrainOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
  Dataset data;
  data.images = at::randn({4, 1, 4, 4});
  data.labels = at::zeros({4}, at::kLong);
  TrainOptions bad;
  bad.batch_size = 0;
  EXPECT_EQ(Train(net, data, bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A batch of the wrong shape is a clear error, not a crash.
  data.images = at::randn({4, 1, 5, 5});
  const absl::Status status = Train(net, data, TrainOptions()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal) << status;
}

// Records the learning rate of every step; a linear classifier underneath.
class RecordingNet : public TrainableNet {
 public:
  RecordingNet() : w_(at::zeros({16, 2}).set_requires_grad(true)) {}
  std::string name() const override { return "recording"; }
  at::Tensor Forward(const at::Tensor& x, bool) override { return x.flatten(1).matmul(w_); }
  void Step() override {
    lrs.push_back(lr_);
    w_.mutable_grad().zero_();
  }
  void set_learning_rate(double lr) override { lr_ = lr; }
  void ResetOptimizer() override { resets_at.push_back(static_cast<int64_t>(lrs.size())); }
  int64_t StateBytes(StateKind) const override { return 0; }
  int64_t ParameterCount() const override { return w_.numel(); }
  std::vector<double> lrs;
  std::vector<int64_t> resets_at;  // steps taken before each reset

 private:
  at::Tensor w_;
  double lr_ = -1;
};

// Ten 4x4 images, batches of 2 over 2 epochs, stopped after 8 of the 10
// steps.
struct EightSteps {
  Dataset data;
  TrainOptions options;
  EightSteps() {
    data.images = at::randn({10, 1, 4, 4});
    data.labels = at::zeros({10}, at::kLong);
    options.batch_size = 2;
    options.epochs = 2;
    options.max_steps = 8;
  }
};

TEST_F(BinaryNetTest, CosineScheduleSetsEveryStepsLearningRate) {
  EightSteps run;  // the schedule spans the 8 steps that run, not 10
  const Dataset& data = run.data;
  TrainOptions& options = run.options;
  options.lr_schedule = LrSchedule::kCosine;
  options.learning_rate = 0.1;
  RecordingNet net;
  ASSERT_TRUE(Train(net, data, options).ok());
  ASSERT_EQ(net.lrs.size(), 8u);
  for (int t = 0; t < 8; ++t) {
    EXPECT_NEAR(net.lrs[t], 0.1 * LrFactor(LrSchedule::kCosine, t, 8), 1e-12) << t;
  }
  EXPECT_NEAR(net.lrs[4], 0.05, 1e-12);

  RecordingNet constant;
  options.lr_schedule = LrSchedule::kConstant;
  ASSERT_TRUE(Train(constant, data, options).ok());
  EXPECT_EQ(constant.lrs, std::vector<double>(8, -1.0));  // the net's own rate, untouched

  options.lr_schedule = LrSchedule::kCosine;
  options.learning_rate = 0;
  EXPECT_EQ(Train(net, data, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BinaryNetTest, AFreshOptimizerEveryFewStepsAsAgentsTasksStartOne) {
  EightSteps run;
  const Dataset& data = run.data;
  TrainOptions& options = run.options;
  options.reset_optimizer_every = 3;
  RecordingNet net;
  ASSERT_TRUE(Train(net, data, options).ok());
  EXPECT_EQ(net.resets_at, (std::vector<int64_t>{3, 6}));  // before steps 4 and 7, not at 0

  RecordingNet never;
  options.reset_optimizer_every = 0;
  ASSERT_TRUE(Train(never, data, options).ok());
  EXPECT_TRUE(never.resets_at.empty());

  options.reset_optimizer_every = -1;
  EXPECT_EQ(Train(never, data, options).status().code(), absl::StatusCode::kInvalidArgument);
}

// The standard trainer's reset drops Adam's moments; the next step makes
// fresh ones.
TEST_F(BinaryNetTest, StandardNetResetDropsAdamsMoments) {
  absl::StatusOr<ArchSpec> mlp = MakeArch("mlp", {1, 8, 8});
  ASSERT_TRUE(mlp.ok());
  StandardNet net(*mlp, StandardOptions());
  Dataset data;
  data.images = at::randn({8, 1, 8, 8});
  data.labels = at::randint(0, 10, {8}, at::kLong);
  TrainOptions options;
  options.batch_size = 4;
  ASSERT_TRUE(Train(net, data, options).ok());
  const int64_t moments = net.StateBytes(StateKind::kOptimizer);
  EXPECT_EQ(moments, 2 * 4 * net.ParameterCount());
  net.ResetOptimizer();
  EXPECT_EQ(net.StateBytes(StateKind::kOptimizer), 0);
  ASSERT_TRUE(Train(net, data, options).ok());
  EXPECT_EQ(net.StateBytes(StateKind::kOptimizer), moments);
}

}  // namespace
}  // namespace fedge
