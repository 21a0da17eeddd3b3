#include "models/quant/quantizer.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace fedge {
namespace {

std::vector<float> Values(const at::Tensor& t) {
  const at::Tensor c = t.detach().to(at::kFloat).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

TEST(QuantizerTest, ForwardByHand) {
  const at::Tensor x = at::tensor({-2.0f, -0.26f, 0.0f, 0.24f, 0.26f, 0.74f, 1.5f});
  const at::Tensor d = at::tensor({0.5f}), xmax = at::tensor({1.0f});
  // clip to [-1, 1], /0.5, round, *0.5.
  EXPECT_EQ(Values(Quantize(x, d, xmax, WeightQuantizerConfig())),
            (std::vector<float>{-1, -0.5f, 0, 0, 0.5f, 0.5f, 1}));
  EXPECT_EQ(Values(Quantize(x, d, xmax, ActivationQuantizerConfig(false))),
            (std::vector<float>{0, 0, 0, 0, 0.5f, 0.5f, 1}));
}

TEST(QuantizerTest, PerSliceAlongDimZero) {
  const at::Tensor w = at::tensor({0.3f, -0.7f, 0.9f, 0.3f, -0.7f, 0.9f}).reshape({2, 3});
  const at::Tensor d = at::tensor({0.5f, 0.1f}), xmax = at::tensor({1.0f, 0.5f});
  EXPECT_EQ(Values(Quantize(w, d, xmax, WeightQuantizerConfig())),
            (std::vector<float>{0.5f, -0.5f, 1.0f, 0.3f, -0.5f, 0.5f}));
}

TEST(QuantizerTest, BitWidthEdgeCases) {
  QuantizerConfig signed_config = WeightQuantizerConfig();
  QuantizerConfig unsigned_config = ActivationQuantizerConfig(false);
  const at::Tensor d = at::ones({6});
  // xmax/d: 1 -> 1 level -> 1 bit (+1 signed); 3 -> 2; 3.4 rounds to 3 -> 2;
  // 3.6 rounds to 4 -> ceil(log2 5) = 3; 127 -> 7; 0.4 rounds to 0 -> 0 bits.
  const at::Tensor xmax = at::tensor({1.0f, 3.0f, 3.4f, 3.6f, 127.0f, 0.4f});
  EXPECT_EQ(IntegerBitWidths(d, xmax, signed_config), (std::vector<int>{2, 3, 3, 4, 8, 1}));
  EXPECT_EQ(IntegerBitWidths(d, xmax, unsigned_config), (std::vector<int>{1, 2, 2, 3, 7, 1}));
  unsigned_config.min_bits = 2;
  EXPECT_EQ(IntegerBitWidths(d, xmax, unsigned_config), (std::vector<int>{2, 2, 2, 3, 7, 2}));
}

TEST(QuantizerTest, BitWidthGradientIsStraightThrough) {
  at::Tensor d = at::tensor({1.0f}).requires_grad_(true);
  at::Tensor xmax = at::tensor({3.6f}).requires_grad_(true);
  BitWidths(d, xmax, WeightQuantizerConfig()).sum().backward();
  // b = ceil(log2(round(xmax/d) + 1)) + 1 with round and ceil passed
  // through: db/dxmax = 1 / ((4 + 1) ln 2) / d, db/dd = -xmax/d * that.
  EXPECT_NEAR(xmax.grad().item<float>(), 1 / (5 * std::log(2.0)), 1e-6);
  EXPECT_NEAR(d.grad().item<float>(), -3.6 / (5 * std::log(2.0)), 1e-5);
}

// The quantizer's surrogate: round(v) replaced by v plus a residual frozen at
// the base point. Its exact derivative is what the backward must compute.
double Surrogate(const std::vector<double>& x, const std::vector<double>& c,
                 const std::vector<double>& residual, double d, double xmax) {
  double sum = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double clipped = std::max(-xmax, std::min(x[i], xmax));
    sum += c[i] * d * (clipped / d + residual[i]);
  }
  return sum;
}

TEST(QuantizerTest, GradientsMatchFiniteDifferencesAwayFromBoundaries) {
  const double d0 = 0.25, xmax0 = 1.1;
  std::vector<double> x, c, residual;
  at::manual_seed(4);
  const at::Tensor candidates = at::randn({400}) * 0.8;
  for (int i = 0; i < 400 && x.size() < 60; ++i) {
    const double xi = candidates[i].item<double>();
    const double v = std::max(-xmax0, std::min(xi, xmax0)) / d0;
    const double frac = v - std::nearbyint(v);
    // Away from rounding boundaries and from the clip points.
    if (std::fabs(std::fabs(frac) - 0.5) < 0.05 || std::fabs(std::fabs(xi) - xmax0) < 0.05) {
      continue;
    }
    x.push_back(xi);
    c.push_back(0.1 * std::sin(3.0 * i));
    residual.push_back(std::nearbyint(v) - v);
  }
  ASSERT_GE(x.size(), 40u);
  QuantizerConfig config = WeightQuantizerConfig();
  config.delta = 0;  // the plain surrogate
  const at::Tensor xt = at::tensor(std::vector<float>(x.begin(), x.end()));
  const at::Tensor ct = at::tensor(std::vector<float>(c.begin(), c.end()));
  at::Tensor d = at::tensor({static_cast<float>(d0)}).requires_grad_(true);
  at::Tensor xmax = at::tensor({static_cast<float>(xmax0)}).requires_grad_(true);
  at::Tensor xa = xt.clone().requires_grad_(true);
  (Quantize(xa, d, xmax, config) * ct).sum().backward();

  const double h = 1e-4;
  const double dd = (Surrogate(x, c, residual, d0 + h, xmax0) -
                     Surrogate(x, c, residual, d0 - h, xmax0)) / (2 * h);
  const double dxmax = (Surrogate(x, c, residual, d0, xmax0 + h) -
                        Surrogate(x, c, residual, d0, xmax0 - h)) / (2 * h);
  EXPECT_NEAR(d.grad().item<double>(), dd, 1e-4);
  EXPECT_NEAR(xmax.grad().item<double>(), dxmax, 1e-4);
  EXPECT_GT(std::fabs(dxmax), 0.0);  // some elements are clipped
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::fabs(x[i]) > xmax0 ? 0.0 : c[i];
    EXPECT_NEAR(xa.grad()[i].item<double>(), want, 1e-6);
  }
}

TEST(QuantizerTest, ContributionsClippedToStep) {
  QuantizerConfig config = WeightQuantizerConfig();
  config.delta = 0;
  at::Tensor d = at::tensor({0.5f}).requires_grad_(true);
  at::Tensor xmax = at::tensor({1.0f}).requires_grad_(true);
  // x = 0.4: v = 0.8, round 1, g (round - v) = 100 * 0.2 = 20 -> clipped to
  // 0.5. x = 3: clipped to xmax, v = 2 = round(v): no d contribution; its
  // xmax contribution g = 100 is clipped to 0.5.
  (Quantize(at::tensor({0.4f, 3.0f}), d, xmax, config) * 100).sum().backward();
  EXPECT_NEAR(d.grad().item<float>(), 0.5, 1e-6);
  EXPECT_NEAR(xmax.grad().item<float>(), 0.5, 1e-6);
}

TEST(QuantizerTest, GradientModificationGoldenValues) {
  // x = 1.15, d = 0.5: v = 2.3, round 2, v - round(v) = 0.3.
  const at::Tensor d = at::tensor({0.5f}), xmax = at::tensor({4.0f});
  struct Case {
    bool weight;
    float g;
    float want;
  };
  // weights:     m = 1 + 0.005 * sign(g) * 0.3
  // activations: m = 1 + 0.005 * sign(g) * (0.5 / atanh(0.95)) * atanh(0.57)
  //              = 1 + 0.005 * sign(g) * 0.27295840 * 0.64752284
  const Case cases[] = {{true, 0.5f, 0.50075f},
                        {true, -0.5f, -0.49925f},
                        {false, 0.5f, 0.500441864f},
                        {false, -0.5f, -0.499558136f}};
  for (const Case& c : cases) {
    QuantizerConfig config = c.weight ? WeightQuantizerConfig() : ActivationQuantizerConfig(true);
    at::Tensor x = at::tensor({1.15f}).requires_grad_(true);
    Quantize(x, d, xmax, config).backward(at::tensor({c.g}));
    EXPECT_NEAR(x.grad().item<float>(), c.want, 2e-7) << c.weight << " " << c.g;
  }
}

TEST(QuantizerTest, ConstraintsHold) {
  QuantizerConfig config = WeightQuantizerConfig();
  config.binary_slices = false;  // else slice 0 (xmax / d < 0.5) is binary
  at::Tensor d = at::tensor({2.0f, 1e-6f, 0.3f});
  at::Tensor xmax = at::tensor({0.5f, 300.0f, 0.2f});
  ConstrainQuantizer(d, xmax, config);
  EXPECT_FLOAT_EQ(d[0].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(xmax[1].item<float>(), 127.0f);
  // d = 1e-6 is first raised to 2^-12; 127 / 2^-12 would need 20 bits, so
  // d is raised again to keep 127 levels (8 bits signed).
  EXPECT_FLOAT_EQ(d[1].item<float>(), 127.0f / 127.49f);
  for (int i = 0; i < 3; ++i) EXPECT_LT(d[i].item<float>(), xmax[i].item<float>());
  // xmax / d = 127 / (1/4096) would need 20 bits: d is raised to keep 8.
  EXPECT_LE(IntegerBitWidths(d, xmax, config)[1], 8);
  at::Tensor ud = at::tensor({0.001f}), ux = at::tensor({1.0f});
  QuantizerConfig act = ActivationQuantizerConfig(false);
  ConstrainQuantizer(ud, ux, act);
  EXPECT_EQ(IntegerBitWidths(ud, ux, act)[0], 8);
}

TEST(QuantizerTest, BinarySliceIsSignTimesScale) {
  // Slice 0 binary (xmax / d = 0.2 rounds to no levels), slice 1 ternary.
  const QuantizerConfig config = WeightQuantizerConfig();
  at::Tensor d = at::tensor({1.0f, 0.2f}).requires_grad_(true);
  at::Tensor xmax = at::tensor({0.2f, 0.2f}).requires_grad_(true);
  at::Tensor x = at::tensor({0.3f, -0.1f, 0.0f, 0.05f, 0.3f, -0.15f, 0.0f, 0.05f})
                     .reshape({2, 4})
                     .requires_grad_(true);
  const at::Tensor q = Quantize(x, d, xmax, config);
  const std::vector<float> want = {0.2f, -0.2f, 0.2f, 0.2f, 0.2f, -0.2f, 0.0f, 0.0f};
  for (int i = 0; i < 8; ++i) EXPECT_FLOAT_EQ(q.reshape({-1})[i].item<float>(), want[i]) << i;
  EXPECT_EQ(IntegerBitWidths(d, xmax, config), (std::vector<int>{1, 2}));
  const at::Tensor g = at::tensor({0.1f, 0.2f, 0.3f, 0.4f, 0.1f, 0.2f, 0.3f, 0.4f}).reshape({2, 4});
  q.backward(g);
  // Straight through inside [-xmax, xmax], nothing above it.
  EXPECT_FLOAT_EQ(x.grad()[0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(x.grad()[0][1].item<float>(), 0.2f);
  EXPECT_FLOAT_EQ(x.grad()[0][3].item<float>(), 0.4f);
  // The scale's gradient: sum g sign(x) = 0.1 - 0.2 + 0.3 + 0.4; the step's: 0.
  EXPECT_NEAR(xmax.grad()[0].item<float>(), 0.6f, 1e-6);
  EXPECT_FLOAT_EQ(d.grad()[0].item<float>(), 0.0f);
  EXPECT_NE(d.grad()[1].item<float>(), 0.0f);
  // The constraints keep it binary and its scale where it was.
  at::Tensor cd = d.detach().clone(), cx = xmax.detach().clone();
  ConstrainQuantizer(cd, cx, config);
  EXPECT_FLOAT_EQ(cx[0].item<float>(), 0.2f);
  EXPECT_EQ(IntegerBitWidths(cd, cx, config), (std::vector<int>{1, 2}));
  EXPECT_EQ(FloorBits(config), 1);
  // Without binary slices the same parameters are a ternary slice again.
  QuantizerConfig no_binary = config;
  no_binary.binary_slices = false;
  EXPECT_EQ(FloorBits(no_binary), 2);
  ConstrainQuantizer(cd, cx, no_binary);
  EXPECT_EQ(IntegerBitWidths(cd, cx, no_binary)[0], 2);
  EXPECT_EQ(Quantize(x.detach(), cd, cx, no_binary)[0][1].item<float>(), 0.0f);
  // Activations are never binary: their floor is 1 bit unsigned, 2 signed.
  EXPECT_EQ(FloorBits(ActivationQuantizerConfig(false)), 1);
  EXPECT_EQ(FloorBits(ActivationQuantizerConfig(true)), 2);
}

TEST(QuantizerTest, Initialisation) {
  QuantizerConfig config = WeightQuantizerConfig();
  // Row 0: mean 0, std 1 -> xmax 3; row 1: mean 1, std 0.5 -> xmax 2.5.
  const at::Tensor w = at::tensor({-1.0f, 1.0f, -1.0f, 1.0f, 0.5f, 1.5f, 0.5f, 1.5f}).reshape({2, 4});
  at::Tensor d, xmax;
  InitWeightQuantizer(w, true, 4, config, &d, &xmax);
  EXPECT_NEAR(xmax[0].item<float>(), 3.0f, 1e-6);
  EXPECT_NEAR(xmax[1].item<float>(), 2.5f, 1e-6);
  EXPECT_NEAR(d[0].item<float>(), 3.0f / 7, 1e-6);  // 4 bits signed: 7 levels
  const at::Tensor a = at::arange(1, 1001, at::kFloat);  // |x| = 1..1000
  InitActivationQuantizer(a, 8, ActivationQuantizerConfig(false), &d, &xmax);
  EXPECT_NEAR(xmax.item<float>(), 127.0f, 1e-6);  // percentile 999, capped
  InitActivationQuantizer(a / 1000, 8, ActivationQuantizerConfig(false), &d, &xmax);
  EXPECT_NEAR(xmax.item<float>(), 0.999f, 1e-6);
  EXPECT_NEAR(d.item<float>(), 0.999f / 255, 1e-7);
}

}  // namespace
}  // namespace fedge
