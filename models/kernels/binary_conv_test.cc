#include "models/kernels/binary_conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/codec/half.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

// Two threads over halves of the range: exercises the kernels' splitting.
const ParallelFor& TwoThreads() {
  static const ParallelFor* parallel = new ParallelFor(
      [](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
        const int64_t half = n / 2;
        std::thread other([&] { if (half > 0) fn(0, half); });
        if (n > half) fn(half, n);
        other.join();
      });
  return *parallel;
}

std::vector<float> Random(int64_t count, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(count);
  for (float& x : v) x = dist(gen);
  return v;
}

float Sign(float v) { return v >= 0 ? 1.0f : -1.0f; }

// A layer's random input, weights and output gradient (seeds seed, seed + 1,
// seed + 2; the gradient's spread dy_scale).
struct LayerData {
  std::vector<float> x, w, dy;
};

LayerData RandomLayer(const BinaryConvShape& s, uint32_t seed, float dy_scale) {
  return {Random(s.n * s.c * s.h * s.w, seed), Random(s.out * s.c * s.taps(), seed + 1),
          Random(s.n * s.out * s.out_h() * s.out_w(), seed + 2, dy_scale)};
}

// Straightforward float references over +-1 values with zero padding.
std::vector<float> ReferenceForward(const std::vector<float>& x,
                                    const std::vector<float>& w,
                                    const BinaryConvShape& s) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  std::vector<float> y(s.n * s.out * oh * ow, 0.0f);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t o = 0; o < s.out; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          double sum = 0;
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t ky = 0; ky < s.kernel; ++ky)
              for (int64_t kx = 0; kx < s.kernel; ++kx) {
                const int64_t iy = oy * s.stride - s.pad + ky;
                const int64_t ix = ox * s.stride - s.pad + kx;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                sum += Sign(x[((n * s.c + c) * s.h + iy) * s.w + ix]) *
                       Sign(w[((o * s.c + c) * s.kernel + ky) * s.kernel + kx]);
              }
          y[((n * s.out + o) * oh + oy) * ow + ox] = static_cast<float>(sum);
        }
  return y;
}

// dx = dy * sign(W)^T (masked) and dw = sign(x)^T * dy, in double.
void ReferenceBackward(const std::vector<float>& x, const std::vector<float>& w,
                       const std::vector<float>& dy, const BinaryConvShape& s,
                       float mask_limit, std::vector<double>* dx,
                       std::vector<double>* dw) {
  const int64_t oh = s.out_h(), ow = s.out_w();
  dx->assign(x.size(), 0.0);
  dw->assign(w.size(), 0.0);
  for (int64_t n = 0; n < s.n; ++n)
    for (int64_t o = 0; o < s.out; ++o)
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox) {
          const double g = dy[((n * s.out + o) * oh + oy) * ow + ox];
          for (int64_t c = 0; c < s.c; ++c)
            for (int64_t ky = 0; ky < s.kernel; ++ky)
              for (int64_t kx = 0; kx < s.kernel; ++kx) {
                const int64_t iy = oy * s.stride - s.pad + ky;
                const int64_t ix = ox * s.stride - s.pad + kx;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                const int64_t xi = ((n * s.c + c) * s.h + iy) * s.w + ix;
                const int64_t wi = ((o * s.c + c) * s.kernel + ky) * s.kernel + kx;
                (*dx)[xi] += g * Sign(w[wi]);
                (*dw)[wi] += g * Sign(x[xi]);
              }
        }
  for (size_t i = 0; i < x.size(); ++i) {
    if (!(std::fabs(x[i]) <= mask_limit)) (*dx)[i] = 0;
  }
}

struct Case {
  BinaryConvShape shape;
  std::string name;
};

std::vector<Case> Cases() {
  std::vector<Case> cases;
  for (int64_t c : {1, 63, 64, 65, 130}) {
    for (int pad : {0, 1}) {
      for (int stride : {1, 2}) {
        BinaryConvShape s;
        s.n = 2, s.c = c, s.h = 7, s.w = 6, s.out = c == 64 ? 33 : 10;
        s.kernel = 3, s.pad = pad, s.stride = stride;
        cases.push_back({s, "conv c=" + std::to_string(c) + " pad=" + std::to_string(pad) +
                                " stride=" + std::to_string(stride)});
      }
    }
  }
  for (int64_t c : {1, 63, 64, 65, 200}) {
    BinaryConvShape s;
    s.n = 37, s.c = c, s.out = 19;
    cases.push_back({s, "linear c=" + std::to_string(c)});
  }
  BinaryConvShape odd;  // a 1x1 convolution on an odd image
  odd.n = 3, odd.c = 70, odd.h = 5, odd.w = 3, odd.out = 64;
  cases.push_back({odd, "conv 1x1"});
  return cases;
}

std::vector<uint64_t> PackedInput(const std::vector<float>& x, const BinaryConvShape& s,
                                  std::vector<uint64_t>* mask = nullptr) {
  std::vector<uint64_t> signs(s.input_words());
  if (mask != nullptr) mask->assign(s.mask_words(), 0);
  PackActivationSigns(x.data(), s, 1.0f, signs.data(),
                      mask == nullptr ? nullptr : mask->data(), TwoThreads());
  return signs;
}

std::vector<uint64_t> PackedWeights(const std::vector<float>& w, const BinaryConvShape& s) {
  std::vector<uint64_t> packed(s.weight_words());
  PackWeightSigns(w.data(), s, packed.data(), TwoThreads());
  return packed;
}

class BinaryConvTest : public ::testing::TestWithParam<KernelPath> {
 protected:
  void SetUp() override { ASSERT_TRUE(SetKernelPath(GetParam())); }
};

TEST_P(BinaryConvTest, ForwardIsBitExactForOddShapes) {
  for (const Case& k : Cases()) {
    SCOPED_TRACE(k.name);
    const BinaryConvShape& s = k.shape;
    const std::vector<float> x = Random(s.n * s.c * s.h * s.w, 1);
    const std::vector<float> w = Random(s.out * s.c * s.taps(), 2);
    std::vector<float> y(s.n * s.out * s.out_h() * s.out_w(), -999.0f);
    BinaryConvForward(PackedInput(x, s).data(), PackedWeights(w, s).data(), s,
                      y.data(), TwoThreads());
    EXPECT_EQ(y, ReferenceForward(x, w, s));
  }
}

// On dY already on the int8 grid the integer backward must be exact: the
// only approximation is the quantisation itself.
TEST_P(BinaryConvTest, BackwardIsExactOnQuantizedGradients) {
  for (const Case& k : Cases()) {
    SCOPED_TRACE(k.name);
    const BinaryConvShape& s = k.shape;
    LayerData layer = RandomLayer(s, 3, 0.4f);
    const std::vector<float>& x = layer.x;
    const std::vector<float>& w = layer.w;
    std::vector<float>& dy = layer.dy;
    const int64_t dy_count = static_cast<int64_t>(dy.size());
    const float step = 0.01f;
    for (float& v : dy) v = step * std::max(-127.0f, std::min(127.0f, std::nearbyint(v / step)));
    dy[0] = 127 * step;  // pins the scale to `step`
    std::vector<int8_t> q(dy_count);
    const float scale = QuantizeInt8(dy.data(), dy_count, q.data(), TwoThreads());
    ASSERT_FLOAT_EQ(scale, step);

    std::vector<uint64_t> mask;
    const std::vector<uint64_t> xs = PackedInput(x, s, &mask);
    std::vector<float> dx(x.size(), -999.0f), dw(w.size(), -999.0f);
    BinaryConvBackwardInput(q.data(), scale, PackedWeights(w, s).data(), mask.data(),
                            s, dx.data(), TwoThreads());
    BinaryConvBackwardWeight(q.data(), scale, xs.data(), s, dw.data(), TwoThreads());
    std::vector<double> rdx, rdw;
    ReferenceBackward(x, w, dy, s, 1.0f, &rdx, &rdw);
    for (size_t i = 0; i < dx.size(); ++i) {
      ASSERT_NEAR(dx[i], rdx[i], 1e-4 * (1 + std::fabs(rdx[i]))) << "dx " << i;
    }
    for (size_t i = 0; i < dw.size(); ++i) {
      ASSERT_NEAR(dw[i], rdw[i], 1e-4 * (1 + std::fabs(rdw[i]))) << "dw " << i;
    }
  }
}

// On arbitrary dY each code is off by at most half a step, so a sum of T
// terms +-code is off by at most T * scale / 2: T = out * taps for dx and
// samples * output pixels for dw.
TEST_P(BinaryConvTest, BackwardStaysWithinTheQuantizationBound) {
  for (const Case& k : Cases()) {
    SCOPED_TRACE(k.name);
    const BinaryConvShape& s = k.shape;
    const LayerData layer = RandomLayer(s, 6, 3.0f);
    const std::vector<float>& x = layer.x;
    const std::vector<float>& w = layer.w;
    const std::vector<float>& dy = layer.dy;
    const int64_t dy_count = static_cast<int64_t>(dy.size());
    std::vector<int8_t> q(dy_count);
    const float scale = QuantizeInt8(dy.data(), dy_count, q.data(), TwoThreads());
    ASSERT_GT(scale, 0);
    std::vector<uint64_t> mask;
    const std::vector<uint64_t> xs = PackedInput(x, s, &mask);
    std::vector<float> dx(x.size()), dw(w.size());
    BinaryConvBackwardInput(q.data(), scale, PackedWeights(w, s).data(), mask.data(),
                            s, dx.data(), TwoThreads());
    BinaryConvBackwardWeight(q.data(), scale, xs.data(), s, dw.data(), TwoThreads());
    std::vector<double> rdx, rdw;
    ReferenceBackward(x, w, dy, s, 1.0f, &rdx, &rdw);
    const double dx_bound = s.out * s.taps() * scale / 2 * 1.0001;
    const double dw_bound = s.n * s.out_h() * s.out_w() * scale / 2 * 1.0001;
    double worst_dx = 0;
    for (size_t i = 0; i < dx.size(); ++i) {
      worst_dx = std::max(worst_dx, std::fabs(dx[i] - rdx[i]));
      if (!(std::fabs(x[i]) <= 1.0f)) ASSERT_EQ(dx[i], 0.0f) << "masked dx " << i;
    }
    double worst_dw = 0;
    for (size_t i = 0; i < dw.size(); ++i) worst_dw = std::max(worst_dw, std::fabs(dw[i] - rdw[i]));
    EXPECT_LE(worst_dx, dx_bound);
    EXPECT_LE(worst_dw, dw_bound);
    EXPECT_GT(worst_dw, 0);  // the quantization is really there
  }
}

TEST_P(BinaryConvTest, BackwardInputRoundsToBFloat16AsItWrites) {
  for (const Case& k : Cases()) {
    SCOPED_TRACE(k.name);
    const BinaryConvShape& s = k.shape;
    const LayerData layer = RandomLayer(s, 10, 0.37f);
    const std::vector<float>& x = layer.x;
    const std::vector<float>& w = layer.w;
    const std::vector<float>& dy = layer.dy;
    const int64_t dy_count = static_cast<int64_t>(dy.size());
    std::vector<int8_t> q(dy_count);
    const float scale = QuantizeInt8(dy.data(), dy_count, q.data(), TwoThreads());
    std::vector<uint64_t> mask;
    PackedInput(x, s, &mask);
    const std::vector<uint64_t> ws = PackedWeights(w, s);
    std::vector<float> plain(x.size()), rounded(x.size());
    BinaryConvBackwardInput(q.data(), scale, ws.data(), mask.data(), s, plain.data(),
                            TwoThreads());
    BinaryConvBackwardInput(q.data(), scale, ws.data(), mask.data(), s, rounded.data(),
                            TwoThreads(), /*round_to_bfloat16=*/true);
    RoundToBFloat16(plain.data(), static_cast<int64_t>(plain.size()));
    EXPECT_EQ(rounded, plain);
  }
}

// The fused convolution + 2x2 max pool equals the two run apart, values
// and argmax positions, including odd sizes the floor-mode pool cuts.
TEST_P(BinaryConvTest, FusedPoolMatchesConvolutionThenPool) {
  for (const Case& k : Cases()) {
    const BinaryConvShape& s = k.shape;
    if (s.linear() || s.out_h() < 2 || s.out_w() < 2) continue;
    SCOPED_TRACE(k.name);
    const std::vector<float> x = Random(s.n * s.c * s.h * s.w, 13);
    const std::vector<float> w = Random(s.out * s.c * s.taps(), 14);
    const std::vector<uint64_t> xs = PackedInput(x, s), ws = PackedWeights(w, s);
    const int64_t oh = s.out_h(), ow = s.out_w(), planes = s.n * s.out;
    std::vector<float> full(planes * oh * ow), pooled(planes * (oh / 2) * (ow / 2));
    std::vector<uint8_t> position(pooled.size());
    BinaryConvForward(xs.data(), ws.data(), s, full.data(), TwoThreads());
    MaxPool2x2Forward(full.data(), planes, oh, ow, pooled.data(), position.data(),
                      TwoThreads());
    std::vector<float> fused(pooled.size(), -1.0f);
    std::vector<uint8_t> fused_position(pooled.size(), 9);
    BinaryConvPoolForward(xs.data(), ws.data(), s, fused.data(), fused_position.data(),
                          TwoThreads());
    EXPECT_EQ(fused, pooled);
    EXPECT_EQ(fused_position, position);

    // Backward: codes land on the argmax of their window, zeros elsewhere.
    std::vector<int8_t> codes(pooled.size());
    for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<int8_t>(i % 255 - 127);
    std::vector<int8_t> q(full.size(), 5);
    ScatterPooledCodes(codes.data(), position.data(), s, q.data(), TwoThreads());
    std::vector<float> dy(pooled.begin(), pooled.end()), dx(full.size(), 7.0f);
    for (size_t i = 0; i < dy.size(); ++i) dy[i] = codes[i];
    MaxPool2x2Backward(dy.data(), position.data(), planes, oh, ow, dx.data(), TwoThreads());
    for (size_t i = 0; i < q.size(); ++i) ASSERT_EQ(static_cast<float>(q[i]), dx[i]) << i;
  }
}

TEST_P(BinaryConvTest, GemmMatchesNaiveSumsIncludingLongDepths) {
  std::mt19937 gen(9);
  std::uniform_int_distribution<int> code(-127, 127), bit(0, 1);
  for (int64_t depth : {64, 128, 4160}) {
    for (int64_t rows : {1, 3, 6}) {
      for (int64_t cols : {1, 5, 9, 16, 17, 70, 130}) {
        std::vector<int8_t> a(rows * depth);
        std::vector<uint8_t> b(cols * depth);
        for (auto& v : a) v = static_cast<int8_t>(code(gen));
        for (auto& v : b) v = static_cast<uint8_t>(bit(gen));
        // Worst case for 16-bit accumulation: a long run of +127 x 1.
        if (depth > 4096) {
          std::fill(a.begin(), a.begin() + depth, int8_t{127});
          std::fill(b.begin(), b.begin() + depth, uint8_t{1});
        }
        std::vector<int32_t> c(rows * cols, 7), want(rows * cols, 7);
        for (int64_t m = 0; m < rows; ++m)
          for (int64_t j = 0; j < cols; ++j)
            for (int64_t k = 0; k < depth; ++k) want[m * cols + j] += a[m * depth + k] * b[j * depth + k];
        std::vector<uint8_t> packed(PackedGemmBytes(cols, depth), 0);
        for (int64_t j = 0; j < cols; ++j)
          for (int64_t k = 0; k < depth; ++k) packed[PackedGemmOffset(j, k, depth)] = b[j * depth + k];
        GemmS8U1(rows, cols, depth, a.data(), depth, packed.data(), c.data(), cols);
        EXPECT_EQ(c, want) << rows << "x" << cols << "x" << depth;
      }
    }
  }
}

// One Adam step on 16-bit storage: every path gives the same bits, and
// they are a float32 Adam step rounded to float16 / bfloat16.
TEST_P(BinaryConvTest, AdamUpdate16MatchesFloatAdamRounded) {
  const int64_t n = 1003;  // a tail past the 8-wide blocks
  const std::vector<float> w0 = Random(n, 15, 0.5f), g = Random(n, 16, 0.01f);
  std::vector<uint16_t> w(n), m(n), v(n);
  for (int64_t i = 0; i < n; ++i) {
    w[i] = FloatToHalf(w0[i]);
    m[i] = static_cast<uint16_t>(i * 37 % 200);  // small positive bfloat16 values
    v[i] = static_cast<uint16_t>(0x3000 + i % 100);
  }
  std::vector<uint8_t> bits((n + 7) / 8);
  const float scale = PackSignsAndMeanAbs(g.data(), n, bits.data());
  AdamStep step;
  step.step = 3;
  for (int use_bits = 0; use_bits < 2; ++use_bits) {
    std::vector<uint16_t> wa = w, ma = m, va = v, wb = w, mb = m, vb = v;
    const float* grad = use_bits ? nullptr : g.data();
    AdamUpdate16(wa.data(), ma.data(), va.data(), grad, bits.data(), scale, n, step,
                 TwoThreads());
    ASSERT_TRUE(SetKernelPath(KernelPath::kPortable));
    AdamUpdate16(wb.data(), mb.data(), vb.data(), grad, bits.data(), scale, n, step,
                 TwoThreads());
    ASSERT_TRUE(SetKernelPath(GetParam()));
    EXPECT_EQ(wa, wb);
    EXPECT_EQ(ma, mb);
    EXPECT_EQ(va, vb);
    const double c1 = 1 - std::pow(0.9, 3), c2 = 1 - std::pow(0.999, 3);
    for (int64_t i = 0; i < n; ++i) {
      auto bf = [](uint16_t b) {
        const uint32_t u = static_cast<uint32_t>(b) << 16;
        float f;
        std::memcpy(&f, &u, 4);
        return static_cast<double>(f);
      };
      const double gi = use_bits ? (((bits[i / 8] >> (i % 8)) & 1) ? scale : -scale) : g[i];
      const double mi = bf(m[i]) * 0.9 + gi * 0.1;
      const double vi = bf(v[i]) * 0.999 + gi * gi * 0.001;
      double wi = HalfToFloat(w[i]) - 1e-3 / c1 * mi / (std::sqrt(vi / c2) + 1e-8);
      wi = std::min(1.0, std::max(-1.0, wi));
      ASSERT_NEAR(HalfToFloat(wa[i]), wi, 1e-3 * std::fabs(wi) + 1e-6) << i;
      ASSERT_NEAR(bf(ma[i]), mi, 8e-3 * std::fabs(mi) + 1e-30) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, BinaryConvTest, ::testing::ValuesIn(SupportedKernelPaths()),
                         [](const ::testing::TestParamInfo<KernelPath>& info) {
                           std::string name = KernelPathName(info.param);
                           for (char& ch : name) {
                             if (ch == '-') ch = '_';
                           }
                           return name;
                         });

TEST(QuantizeInt8Test, MapsTheLargestMagnitudeTo127AndRejectsNonFinite) {
  std::vector<float> dy = {0.5f, -2.0f, 1.0f, 0.0f};
  std::vector<int8_t> q(4);
  const float scale = QuantizeInt8(dy.data(), 4, q.data(), TwoThreads());
  EXPECT_FLOAT_EQ(scale, 2.0f / 127);
  EXPECT_EQ(q, (std::vector<int8_t>{32, -127, 64, 0}));
  std::vector<float> zeros(5, 0.0f);
  std::vector<int8_t> qz(5, 9);
  EXPECT_EQ(QuantizeInt8(zeros.data(), 5, qz.data(), TwoThreads()), 0.0f);
  EXPECT_EQ(qz, std::vector<int8_t>(5, 0));
  dy[2] = std::nanf("");
  EXPECT_LT(QuantizeInt8(dy.data(), 4, q.data(), TwoThreads()), 0.0f);
}

TEST(PackSignsAndMeanAbsTest, PacksLowBitFirstAndAveragesMagnitudes) {
  const std::vector<float> dw = {1, -1, 0, -3, 2, 2, -2, 2, -1};
  uint8_t bits[2] = {0xFF, 0xFF};
  EXPECT_FLOAT_EQ(PackSignsAndMeanAbs(dw.data(), 9, bits), 14.0f / 9);
  EXPECT_EQ(bits[0], 0b10110101);
  EXPECT_EQ(bits[1], 0);
}

TEST(KernelPathTest, PortableIsAlwaysSupportedAndPinnable) {
  const std::vector<KernelPath> paths = SupportedKernelPaths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.front(), KernelPath::kPortable);
  EXPECT_TRUE(SetKernelPath(KernelPath::kPortable));
  EXPECT_EQ(ActiveKernelPath(), KernelPath::kPortable);
}

}  // namespace
}  // namespace fedge
