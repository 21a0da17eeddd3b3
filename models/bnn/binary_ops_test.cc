#include "models/bnn/binary_ops.h"

#include <ATen/ATen.h>

#include <vector>

#include "common/codec/bit_pack.h"
#include "gtest/gtest.h"
#include "models/bnn/bit_tensor.h"

namespace fedge {
namespace {

// Straight-through references in plain autograd: sign forward, the gradient
// of clamp(x, -limit, limit) backward.
at::Tensor SteSign(const at::Tensor& x) {
  const at::Tensor clipped = x.clamp(-1, 1);
  return clipped + (SignOf(x) - clipped).detach();
}

at::Tensor SteIdentitySign(const at::Tensor& w) {
  return w + (SignOf(w) - w).detach();
}

void ExpectClose(const at::Tensor& a, const at::Tensor& b, double rtol,
                 double atol, const char* what) {
  ASSERT_TRUE(a.defined()) << what;
  ASSERT_TRUE(b.defined()) << what;
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  EXPECT_TRUE(at::allclose(a.to(at::kFloat), b.to(at::kFloat), rtol, atol))
      << what << ": max diff "
      << (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<float>();
}

// Gradients on the int8 grid the binary layers quantize dY to (per tensor,
// max|g| / 127): on them the integer backward must match float autograd.
at::Tensor OnInt8Grid(const at::Tensor& g) {
  const double scale = g.abs().max().item<double>() / 127;
  return (g / scale).round_() * scale;
}

class BinaryOpsTest : public ::testing::Test {
 protected:
  void SetUp() override { at::manual_seed(3); }
  MemoryLedger ledger_;
};

TEST_F(BinaryOpsTest, ConvMatchesStraightThroughAutograd) {
  const at::Tensor x = at::randn({4, 3, 7, 7}) * 1.5;
  const at::Tensor w = at::randn({5, 3, 3, 3}) * 0.1;
  at::Tensor xa = x.clone().requires_grad_(true);
  at::Tensor wa = w.clone().requires_grad_(true);
  LayerHooks hooks{"conv", &ledger_};
  ConvConfig config;
  config.padding = 1;
  const at::Tensor y = PackedConv(xa, wa, config, hooks);
  // Only the packed sign and packed mask of x are held. Signs pack channels
  // into 64-bit words per pixel (3 channels take a word); the mask is 1 bit
  // per element, each sample's 147 bits rounded up to 3 words.
  EXPECT_EQ(ledger_.saved_bytes(), 8 * 4 * 7 * 7 + 8 * 4 * 3);
  const at::Tensor gy = OnInt8Grid(at::randn(y.sizes()));
  y.backward(gy);
  EXPECT_EQ(ledger_.saved_bytes(), 0);

  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor wr = w.clone().requires_grad_(true);
  const at::Tensor yr =
      at::conv2d(SteSign(xr), SteIdentitySign(wr), {}, {1, 1}, {1, 1});
  yr.backward(gy);
  ExpectClose(y, yr, 0, 0, "forward");
  ExpectClose(xa.grad(), xr.grad(), 1e-5, 1e-5, "dx");
  ExpectClose(wa.grad(), wr.grad(), 1e-5, 1e-4, "dw");
}

// With a multiple of 64 channels the packing wastes nothing: sign and mask
// are 2 bits per element. On a gradient off the int8 grid each dX element
// is off by at most (terms summed) x scale / 2, terms = out x taps.
TEST_F(BinaryOpsTest, ConvOnWholeWordsHoldsTwoBitsAndBoundsTheQuantization) {
  const at::Tensor x = at::randn({2, 64, 6, 6});
  const at::Tensor w = at::randn({8, 64, 3, 3});
  at::Tensor xa = x.clone().requires_grad_(true);
  LayerHooks hooks{"conv", &ledger_};
  const at::Tensor y = PackedConv(xa, w, ConvConfig(), hooks);
  EXPECT_EQ(ledger_.saved_bytes(), 2 * static_cast<int64_t>(PackedBytes(x.numel(), 1)));
  const at::Tensor gy = at::randn(y.sizes());
  y.backward(gy);
  at::Tensor xr = x.clone().requires_grad_(true);
  at::conv2d(SteSign(xr), SignOf(w)).backward(gy);
  const double scale = gy.abs().max().item<double>() / 127;
  const double bound = 8 * 9 * scale / 2;
  const double worst = (xa.grad() - xr.grad()).abs().max().item<double>();
  EXPECT_LE(worst, bound);
  EXPECT_GT(worst, 0);
}

// The fused convolution + pool gives what the two ops give apart: the same
// forward, the same saved bytes per ledger line, and on int8-grid gradients
// the same dX and 1-bit dW.
TEST_F(BinaryOpsTest, FusedConvPoolMatchesConvThenPool) {
  const at::Tensor x = at::randn({3, 64, 9, 8});
  const at::Tensor w = at::randn({16, 64, 3, 3});
  const at::Tensor gy = OnInt8Grid(at::randn({3, 16, 3, 3}));
  at::Tensor dx[2];
  SignGrad sign_grad[2];
  MemoryLedger ledger[2];
  int64_t conv_held[2], pool_held[2];
  for (int fused = 0; fused < 2; ++fused) {
    at::Tensor xa = x.clone().requires_grad_(true);
    at::Tensor wa = w.clone().requires_grad_(true);
    LayerHooks conv{"conv", &ledger[fused], &sign_grad[fused]};
    LayerHooks pool{"pool", &ledger[fused]};
    ConvConfig config;
    const at::Tensor y = fused ? PackedConvPool(xa, wa, config, conv, pool)
                               : PackedMaxPool2x2(PackedConv(xa, wa, config, conv), pool);
    ASSERT_EQ(y.sizes(), gy.sizes());
    conv_held[fused] = ledger[fused].layers().at("conv").held;
    pool_held[fused] = ledger[fused].layers().at("pool").held;
    y.backward(gy);
    EXPECT_EQ(ledger[fused].saved_bytes(), 0);
    dx[fused] = xa.grad();
  }
  EXPECT_EQ(conv_held[1], conv_held[0]);
  EXPECT_EQ(pool_held[1], pool_held[0]);
  EXPECT_GT(pool_held[1], 0);
  ExpectClose(dx[1], dx[0], 0, 0, "dx");
  ASSERT_TRUE(sign_grad[0].ready && sign_grad[1].ready);
  EXPECT_TRUE(at::equal(sign_grad[1].bits, sign_grad[0].bits));
  EXPECT_FLOAT_EQ(sign_grad[1].scale, sign_grad[0].scale);
}

TEST_F(BinaryOpsTest, LinearMatchesStraightThroughAutograd) {
  const at::Tensor x = at::randn({6, 10}) * 1.5;
  const at::Tensor w = at::randn({4, 10}) * 0.1;
  at::Tensor xa = x.clone().requires_grad_(true);
  at::Tensor wa = w.clone().requires_grad_(true);
  LayerHooks hooks{"fc", &ledger_};
  const at::Tensor y = PackedConv(xa, wa, ConvConfig(), hooks);
  const at::Tensor gy = OnInt8Grid(at::randn(y.sizes()));
  y.backward(gy);
  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor wr = w.clone().requires_grad_(true);
  at::linear(SteSign(xr), SteIdentitySign(wr)).backward(gy);
  ExpectClose(xa.grad(), xr.grad(), 1e-5, 1e-5, "dx");
  ExpectClose(wa.grad(), wr.grad(), 1e-5, 1e-5, "dw");
}

TEST_F(BinaryOpsTest, KBitInputSavesCodesAndMatchesAutograd) {
  const at::Tensor x = at::randn({3, 2, 6, 6}) * 2;
  const at::Tensor w = at::randn({4, 2, 3, 3});
  at::Tensor xa = x.clone().requires_grad_(true);
  at::Tensor wa = w.clone().requires_grad_(true);
  LayerHooks hooks{"conv", &ledger_};
  const ConvConfig config = SymmetricInput(3, 0.5f);  // levels -3..3 of 0.5
  const at::Tensor y = PackedConv(xa, wa, config, hooks);
  EXPECT_EQ(ledger_.saved_bytes(),
            static_cast<int64_t>(PackedBytes(x.numel(), 3) +
                                 PackedBytes(x.numel(), 1)));
  const at::Tensor gy = at::randn(y.sizes());
  y.backward(gy);

  at::Tensor xr = x.clone().requires_grad_(true);
  at::Tensor wr = w.clone().requires_grad_(true);
  const at::Tensor clipped = xr.clamp(-1.5, 1.5);
  const at::Tensor xq = clipped + (QuantizeSymmetric(xr, 3, 0.5f) - clipped).detach();
  at::conv2d(xq, SteIdentitySign(wr)).backward(gy);
  ExpectClose(xa.grad(), xr.grad(), 1e-5, 1e-5, "dx");
  ExpectClose(wa.grad(), wr.grad(), 1e-5, 1e-4, "dw");
}

TEST_F(BinaryOpsTest, FirstLayerKeepsRealInput) {
  const at::Tensor x = at::randn({2, 1, 6, 6});
  const at::Tensor w = at::randn({3, 1, 3, 3});
  at::Tensor wa = w.clone().requires_grad_(true);
  LayerHooks hooks{"conv1", &ledger_};
  ConvConfig config;
  config.real_input = true;
  const at::Tensor y = PackedConv(x, wa, config, hooks);
  EXPECT_EQ(ledger_.saved_bytes(), static_cast<int64_t>(x.nbytes()));
  const at::Tensor gy = at::randn(y.sizes());
  y.backward(gy);
  at::Tensor wr = w.clone().requires_grad_(true);
  at::conv2d(x, SteIdentitySign(wr)).backward(gy);
  ExpectClose(wa.grad(), wr.grad(), 1e-5, 1e-5, "dw");
}

TEST_F(BinaryOpsTest, SignGradReplacesFloatWeightGradient) {
  const at::Tensor x = at::randn({4, 3, 5, 5});
  const at::Tensor w = at::randn({2, 3, 3, 3});
  at::Tensor xa = x.clone().requires_grad_(true);
  at::Tensor wa = w.clone().requires_grad_(true);
  SignGrad sign_grad;
  LayerHooks hooks{"conv", &ledger_, &sign_grad};
  const at::Tensor y = PackedConv(xa, wa, ConvConfig(), hooks);
  const at::Tensor gy = OnInt8Grid(at::randn(y.sizes()));
  y.backward(gy);
  EXPECT_FALSE(wa.grad().defined());
  ASSERT_TRUE(sign_grad.ready);
  EXPECT_EQ(sign_grad.bits.numel(),
            static_cast<int64_t>(PackedBytes(w.numel(), 1)));

  at::Tensor wr = w.clone().requires_grad_(true);
  at::conv2d(SteSign(x), SteIdentitySign(wr)).backward(gy);
  ExpectClose(UnpackSigns(sign_grad.bits, w.sizes()), SignOf(wr.grad()), 0, 0,
              "sign(dW)");
  EXPECT_NEAR(sign_grad.scale, wr.grad().abs().mean().item<float>(), 1e-5);
}

TEST_F(BinaryOpsTest, HalfLatentWeightsGetHalfGradients) {
  const at::Tensor x = at::randn({4, 8});
  const at::Tensor w = at::randn({3, 8}) * 0.1;
  at::Tensor xa = x.clone().requires_grad_(true);
  at::Tensor wa = w.to(at::kHalf).requires_grad_(true);
  LayerHooks hooks{"fc", &ledger_};
  const at::Tensor y = PackedConv(xa, wa, ConvConfig(), hooks);
  const at::Tensor gy = OnInt8Grid(at::randn(y.sizes()));
  y.backward(gy);
  ASSERT_EQ(wa.grad().scalar_type(), at::kHalf);
  at::Tensor wr = w.to(at::kHalf).to(at::kFloat).requires_grad_(true);
  at::linear(SteSign(x), SteIdentitySign(wr)).backward(gy);
  ExpectClose(wa.grad(), wr.grad(), 2e-3, 2e-3, "dw in half");
}

TEST_F(BinaryOpsTest, NoGraphNoSaving) {
  at::Tensor x = at::randn({2, 3, 5, 5}).requires_grad_(true);
  at::Tensor w = at::randn({2, 3, 3, 3}).requires_grad_(true);
  LayerHooks hooks{"conv", &ledger_};
  at::NoGradGuard no_grad;
  const at::Tensor y = PackedConv(x, w, ConvConfig(), hooks);
  EXPECT_EQ(ledger_.peak_saved_bytes(), 0);
  ExpectClose(y, at::conv2d(SignOf(x), SignOf(w)), 0, 0, "forward");
}

// The design's l1 batch-norm backward, written out with plain tensor ops.
at::Tensor L1NormBackwardFormula(const at::Tensor& x, const at::Tensor& gy) {
  const std::vector<int64_t> dims = {0, 2, 3};
  const at::Tensor mu = x.mean(dims, true);
  const at::Tensor sigma = (x - mu).abs().mean(dims, true) + 1e-5;
  const at::Tensor xhat = (x - mu) / sigma;
  const at::Tensor s = SignOf(xhat);
  const at::Tensor mean_abs = xhat.abs().mean(dims, true);
  const at::Tensor g = gy / sigma;
  return g - g.mean(dims, true) - s * (g * s * mean_abs).mean(dims, true);
}

TEST_F(BinaryOpsTest, L1BatchNormForwardBackwardAndStatistics) {
  const at::Tensor x = at::randn({6, 4, 5, 5}) * 2 + 0.5;
  const at::Tensor beta0 = at::randn({4});
  at::Tensor xa = x.clone().requires_grad_(true);
  at::Tensor beta = beta0.clone().requires_grad_(true);
  at::Tensor running_mean = at::zeros({4});
  at::Tensor running_sigma = at::ones({4});
  LayerHooks hooks{"bn", &ledger_};
  const at::Tensor y = L1BatchNorm(xa, beta, running_mean, running_sigma,
                                   /*training=*/true, 0.1, hooks);
  // 1-bit sign(xhat) for 600 elements, then sigma and mean|xhat| in 16 bits.
  EXPECT_EQ(ledger_.saved_bytes(), 75 + 8 + 8);

  const std::vector<int64_t> dims = {0, 2, 3};
  const at::Tensor mu = x.mean(dims);
  const at::Tensor sigma = (x - mu.view({1, -1, 1, 1})).abs().mean(dims) + 1e-5;
  ExpectClose(y,
              (x - mu.view({1, -1, 1, 1})) / sigma.view({1, -1, 1, 1}) +
                  beta0.view({1, -1, 1, 1}),
              1e-5, 1e-5, "forward");
  ExpectClose(running_mean, mu * 0.1, 1e-5, 1e-6, "running mean");
  ExpectClose(running_sigma, 0.9 + sigma * 0.1, 1e-5, 1e-6, "running sigma");

  const at::Tensor gy = at::randn(y.sizes());
  y.backward(gy);
  EXPECT_EQ(ledger_.saved_bytes(), 0);
  // sigma and mean|xhat| travel in float16: relative error up to ~1e-3.
  ExpectClose(xa.grad(), L1NormBackwardFormula(x, gy), 2e-3, 2e-3,
              "dx vs the design's formula");
  ExpectClose(beta.grad(), gy.sum(dims), 1e-5, 1e-5, "dbeta");

  // Against the exact gradient of the l1 forward the method approximates:
  // the direction must agree closely.
  at::Tensor xr = x.clone().requires_grad_(true);
  const at::Tensor mur = xr.mean(dims, true);
  const at::Tensor yr = (xr - mur) / ((xr - mur).abs().mean(dims, true) + 1e-5);
  yr.backward(gy);
  const double cosine = at::cosine_similarity(xa.grad().flatten(),
                                              xr.grad().flatten(), 0)
                            .item<double>();
  EXPECT_GT(cosine, 0.95);

  // Evaluation uses the running statistics and saves nothing.
  at::NoGradGuard no_grad;
  ExpectClose(L1BatchNorm(x, beta, running_mean, running_sigma, false, 0.1,
                          hooks),
              (x - running_mean.view({1, -1, 1, 1})) /
                      running_sigma.view({1, -1, 1, 1}) +
                  beta.view({1, -1, 1, 1}),
              1e-6, 1e-6, "eval");
}

TEST_F(BinaryOpsTest, L1BatchNormOnFeatures) {
  at::Tensor x = (at::randn({8, 3}) * 3).requires_grad_(true);
  at::Tensor beta = at::zeros({3}).requires_grad_(true);
  at::Tensor rm = at::zeros({3}), rs = at::ones({3});
  LayerHooks hooks{"bn", &ledger_};
  const at::Tensor y = L1BatchNorm(x, beta, rm, rs, true, 0.1, hooks);
  // Each channel's output has zero mean and mean absolute value 1.
  ExpectClose(y.mean(0), at::zeros({3}), 0, 1e-5, "mean");
  ExpectClose(y.abs().mean(0), at::ones({3}), 1e-4, 1e-4, "mean |y|");
  y.sum().backward();
  EXPECT_TRUE(x.grad().defined());
}

TEST_F(BinaryOpsTest, MaxPoolSavesTwoBitPositions) {
  const at::Tensor x = at::randn({2, 3, 5, 5});  // odd: floor mode drops a row
  at::Tensor xa = x.clone().requires_grad_(true);
  LayerHooks hooks{"pool", &ledger_};
  const at::Tensor y = PackedMaxPool2x2(xa, hooks);
  EXPECT_EQ(ledger_.saved_bytes(),
            static_cast<int64_t>(PackedBytes(2 * 3 * 2 * 2, 2)));
  const at::Tensor gy = at::randn(y.sizes());
  y.backward(gy);
  at::Tensor xr = x.clone().requires_grad_(true);
  const at::Tensor yr = at::max_pool2d(xr, {2, 2}, {2, 2});
  yr.backward(gy);
  ExpectClose(y, yr, 0, 0, "forward");
  ExpectClose(xa.grad(), xr.grad(), 0, 0, "dx");
  EXPECT_EQ(ledger_.saved_bytes(), 0);
}

TEST_F(BinaryOpsTest, GradientRoundingGoldenValues) {
  const at::Tensor g = at::tensor({1.0f / 3, 0.3f, -5.0f, 1e-5f, 0.0f, 7.9f});
  const at::Tensor half = RoundGradX(g, GradXPrecision::kFloat16);
  EXPECT_FLOAT_EQ(half[0].item<float>(), 0.333251953125f);
  EXPECT_FLOAT_EQ(half[2].item<float>(), -5.0f);
  const at::Tensor bf16 = RoundGradX(g, GradXPrecision::kBFloat16);
  // 1/3 = 0x3EAAAAAB -> 0x3EAB0000 = 0.333984375 (round up); 0.3 =
  // 0x3E99999A -> 0x3E9A0000 = 0.30078125; 1e-5 keeps float32's range.
  EXPECT_FLOAT_EQ(bf16[0].item<float>(), 0.333984375f);
  EXPECT_FLOAT_EQ(bf16[1].item<float>(), 0.30078125f);
  EXPECT_NEAR(bf16[3].item<float>(), 1e-5f, 1e-7f);
  EXPECT_EQ(bf16[4].item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(bf16, g.to(at::kBFloat16).to(at::kFloat), 0, 0));
  const at::Tensor pow2 = RoundGradX(g, GradXPrecision::kPow2);
  // top exponent ceil(log2 7.9) = 3; 15 exponents below it survive.
  const std::vector<float> want = {0.25f, 0.25f, -4.0f, 0.0f, 0.0f, 8.0f};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_FLOAT_EQ(pow2[i].item<float>(), want[i]) << i;
  }
  EXPECT_TRUE(at::equal(RoundGradX(g, GradXPrecision::kFloat32), g));
}

}  // namespace
}  // namespace fedge
