#include "common/codec/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "common/codec/bit_pack.h"
#include "common/env/faulty_env.h"
#include "common/status/reject_reason.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

std::vector<float> RandomValues(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

WireTensor Shaped(std::vector<uint32_t> shape) {
  WireTensor t;
  t.name = "weight";
  t.shape = std::move(shape);
  return t;
}

std::vector<float> Decoded(const WireTensor& t) {
  std::vector<float> out(t.numel());
  const absl::Status status = DecodeTensor(t, absl::MakeSpan(out));
  EXPECT_TRUE(status.ok()) << status;
  return out;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

TEST(UpdateCodecTest, ExactEncodedSizes) {
  // A conv weight of 64 output channels x 27: one slice per channel.
  const std::vector<float> v = RandomValues(64 * 27, 1);
  std::vector<float> residual(v.size());
  struct Case {
    UpdateSpec spec;
    size_t bytes;
  };
  const Case cases[] = {
      {{Codec::kFp32, 0, 1}, 4 * 1728},
      {{Codec::kFp16, 0, 1}, 2 * 1728},
      {{Codec::kQ, 4, 64}, 64 * 14},    // 27 codes x 4 bits = 13.5 -> 14 bytes
      {{Codec::kQ, 2, 1}, 432},         // 1728 x 2 bits
      {{Codec::kQ, 8, 64}, 64 * 27},
      {{Codec::kSignEf, 1, 64}, 64 * 4},  // 27 bits -> 4 bytes per channel
      {{Codec::kSignEf, 1, 1}, 216},
  };
  for (const Case& c : cases) {
    WireTensor t = Shaped({64, 3, 3, 3});
    ASSERT_TRUE(EncodeUpdate(v, c.spec, 7, &residual, &t).ok());
    EXPECT_EQ(t.payload.size(), c.bytes) << CodecName(c.spec.codec) << c.spec.bits;
    EXPECT_EQ(*PayloadBytes(t), c.bytes);
    std::fill(residual.begin(), residual.end(), 0.0f);
  }
}

TEST(UpdateCodecTest, Fp32IsExactAndFp16WithinHalfPrecision) {
  const std::vector<float> v = RandomValues(1000, 2);
  WireTensor t = Shaped({1000});
  ASSERT_TRUE(EncodeUpdate(v, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
  EXPECT_EQ(Decoded(t), v);
  ASSERT_TRUE(EncodeUpdate(v, {Codec::kFp16, 0, 1}, 0, nullptr, &t).ok());
  const std::vector<float> back = Decoded(t);
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_NEAR(back[i], v[i], std::fabs(v[i]) * std::ldexp(1.0, -11) + 6e-8) << i;
  }
}

TEST(UpdateCodecTest, QErrorIsBelowOneStep) {
  const std::vector<float> v = RandomValues(64 * 50, 3);
  for (int bits = 2; bits <= 8; ++bits) {
    WireTensor t = Shaped({64, 50});
    ASSERT_TRUE(EncodeUpdate(v, {Codec::kQ, bits, 64}, 11, nullptr, &t).ok());
    const std::vector<float> back = Decoded(t);
    const int levels = (1 << (bits - 1)) - 1;
    for (size_t i = 0; i < v.size(); ++i) {
      const float step = t.slices[i / 50].step / levels;
      ASSERT_LE(std::fabs(back[i] - v[i]), step * (1 + 1e-5f)) << "bits " << bits;
    }
  }
}

// Stochastic rounding is unbiased: averaged over many independent seeds, the
// decoded value converges on the true one. With 4000 draws the standard error
// is at most step / (2 sqrt(4000)) = 0.008 step; allow 5 of those.
TEST(UpdateCodecTest, QStochasticRoundingIsUnbiased) {
  const std::vector<float> v = {0.3f, -0.71f, 0.05f, 1.0f, -0.999f, 0.5f, 0.0f, 0.123f};
  std::vector<double> mean(v.size(), 0.0);
  constexpr int kDraws = 4000;
  float step = 0;
  for (int seed = 0; seed < kDraws; ++seed) {
    WireTensor t = Shaped({8});
    ASSERT_TRUE(EncodeUpdate(v, {Codec::kQ, 2, 1}, seed, nullptr, &t).ok());
    step = t.slices[0].step;  // 2 bits: levels -1, 0, 1 of size max|v|
    const std::vector<float> back = Decoded(t);
    for (size_t i = 0; i < v.size(); ++i) mean[i] += back[i] / kDraws;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    EXPECT_NEAR(mean[i], v[i], 5 * 0.5 * step / std::sqrt(kDraws)) << i;
  }
}

// The error-feedback property: what was sent, summed over rounds, tracks the
// sum of the true updates; the gap is exactly the residual, which stays
// bounded instead of growing with the number of rounds.
TEST(UpdateCodecTest, SignErrorFeedbackTracksTheTrueSum) {
  const size_t n = 256;
  std::vector<float> residual(n, 0.0f);
  std::vector<double> true_sum(n, 0.0), sent_sum(n, 0.0);
  double max_gap = 0;
  for (int round = 0; round < 300; ++round) {
    const std::vector<float> delta = RandomValues(n, 100 + round, 0.01f);
    WireTensor t = Shaped({4, 64});
    ASSERT_TRUE(EncodeUpdate(delta, {Codec::kSignEf, 1, 4}, 0, &residual, &t).ok());
    const std::vector<float> sent = Decoded(t);
    for (size_t i = 0; i < n; ++i) {
      true_sum[i] += delta[i];
      sent_sum[i] += sent[i];
      EXPECT_NEAR(true_sum[i] - sent_sum[i], residual[i], 1e-4);
    }
    double gap = 0;
    for (size_t i = 0; i < n; ++i) gap = std::max(gap, std::fabs(true_sum[i] - sent_sum[i]));
    if (round >= 50) max_gap = std::max(max_gap, gap);
  }
  // Without feedback the gap would grow like sqrt(rounds) * 0.01 * n-ish;
  // with it, it stays within a few per-round magnitudes.
  EXPECT_LT(max_gap, 0.2);
}

TEST(UpdateCodecTest, AccumulateAddsWeightedDecodedValues) {
  const std::vector<float> v = RandomValues(120, 4);
  WireTensor t = Shaped({10, 12});
  ASSERT_TRUE(EncodeUpdate(v, {Codec::kQ, 4, 10}, 5, nullptr, &t).ok());
  const std::vector<float> back = Decoded(t);
  std::vector<float> sum(120, 1.0f);
  ASSERT_TRUE(AccumulateDecoded(t, 0.25f, absl::MakeSpan(sum)).ok());
  for (size_t i = 0; i < sum.size(); ++i) EXPECT_FLOAT_EQ(sum[i], 1.0f + 0.25f * back[i]);
  std::vector<float> wrong(119);
  EXPECT_FALSE(AccumulateDecoded(t, 1, absl::MakeSpan(wrong)).ok());
}

TEST(UpdateCodecTest, RejectedUpdateLeavesTheSumUntouched) {
  // Valid first elements, a bad code near the end: nothing may be added.
  const std::vector<float> v = RandomValues(4000, 6);
  WireTensor t = Shaped({4000});
  ASSERT_TRUE(EncodeUpdate(v, {Codec::kQ, 4, 1}, 5, nullptr, &t).ok());
  t.payload.back() = static_cast<char>(0xFF);
  std::vector<float> sum(4000, 2.0f);
  EXPECT_FALSE(AccumulateDecoded(t, 1.0f, absl::MakeSpan(sum)).ok());
  for (float s : sum) ASSERT_EQ(s, 2.0f);

  std::vector<float> with_nan = v;
  with_nan[3999] = 1.0f;
  WireTensor f = Shaped({4000});
  ASSERT_TRUE(EncodeUpdate(with_nan, {Codec::kFp32, 0, 1}, 0, nullptr, &f).ok());
  const float nan = std::nanf("");
  std::memcpy(&f.payload[4 * 3999], &nan, 4);
  EXPECT_FALSE(AccumulateDecoded(f, 1.0f, absl::MakeSpan(sum)).ok());
  for (float s : sum) ASSERT_EQ(s, 2.0f);
  EXPECT_FALSE(AccumulateDecoded(t, std::nanf(""), absl::MakeSpan(sum)).ok());
}

TEST(UpdateCodecTest, MixedCostsItsBitsPerWeight) {
  // Two channels: 2-bit (levels -1..1 of 0.5) and 4-bit (levels -7..7 of 0.1).
  const std::vector<float> v = {0.4f, -0.6f, 0.1f, 2.0f, 0.26f, -0.33f, 0.04f, -9.0f};
  const std::vector<SliceInfo> slices = {{2, 0.5f, 0.5f}, {4, 0.1f, 0.7f}};
  WireTensor t = Shaped({2, 4});
  ASSERT_TRUE(EncodeMixed(v, slices, &t).ok());
  EXPECT_EQ(t.payload.size(), PackedBytes(4, 2) + PackedBytes(4, 4));
  const std::vector<float> back = Decoded(t);
  const std::vector<float> want = {0.5f, -0.5f, 0.0f, 0.5f, 0.3f, -0.3f, 0.0f, -0.7f};
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(back[i], want[i], 1e-6) << i;
}

TEST(UpdateCodecTest, MixedBinarySlicesAreSignsTimesTheirRange) {
  // Slice 0 binary (range 0.3, step 1.2: no levels), slice 1 ternary.
  const std::vector<float> v = {0.4f, -0.6f, 0.0f, -0.01f, 0.4f, -0.6f, 0.1f, 0.0f};
  const std::vector<SliceInfo> slices = {{1, 1.2f, 0.3f}, {2, 0.5f, 0.5f}};
  WireTensor t = Shaped({2, 4});
  ASSERT_TRUE(EncodeMixed(v, slices, &t).ok());
  EXPECT_EQ(t.payload.size(), PackedBytes(4, 1) + PackedBytes(4, 2));
  const std::vector<float> back = Decoded(t);
  const std::vector<float> want = {0.3f, -0.3f, 0.3f, -0.3f, 0.5f, -0.5f, 0.0f, 0.0f};
  for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(back[i], want[i], 1e-6) << i;
  // Bounded by the range like every other code; a slice without levels
  // must be a 1-bit slice.
  EXPECT_TRUE(CheckUpdate(t, 0.5f).ok());
  EXPECT_FALSE(CheckUpdate(t, 0.2f).ok());
  WireTensor bad = Shaped({2, 4});
  EXPECT_FALSE(EncodeMixed(v, {{2, 1.2f, 0.3f}, {2, 0.5f, 0.5f}}, &bad).ok());
}

TEST(UpdateCodecTest, FrozenCodingsAreCodesOrSigns) {
  const std::vector<float> v = {0.4f, -0.6f, 0.1f, 2.0f, 0.26f, -0.33f, 0.04f, -9.0f};
  FrozenCoding mixed;
  mixed.slices = {{2, 0.5f, 0.5f}, {4, 0.1f, 0.7f}};
  WireTensor t = Shaped({2, 4});
  ASSERT_TRUE(EncodeFrozen(v, mixed, &t).ok());
  WireTensor direct = Shaped({2, 4});
  ASSERT_TRUE(EncodeMixed(v, mixed.slices, &direct).ok());
  EXPECT_EQ(t.payload, direct.payload);
  // Signs: one bit each, +-mean|w| of the slice; the signs are the values'.
  FrozenCoding signs;
  signs.codec = Codec::kSignEf;
  signs.sign_slices = 2;
  ASSERT_TRUE(EncodeFrozen(v, signs, &t).ok());
  EXPECT_EQ(t.payload.size(), 2u);
  const std::vector<float> back = Decoded(t);
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(back[i] > 0, v[i] > 0) << i;
  EXPECT_NEAR(std::fabs(back[0]), (0.4f + 0.6f + 0.1f + 2.0f) / 4, 1e-6);
  FrozenCoding wrong;
  wrong.codec = Codec::kFp16;
  EXPECT_FALSE(EncodeFrozen(v, wrong, &t).ok());
}

TEST(UpdateCodecTest, RejectsInconsistentTensors) {
  const std::vector<float> v = RandomValues(12, 5);
  WireTensor t = Shaped({3, 4});
  ASSERT_TRUE(EncodeUpdate(v, {Codec::kQ, 4, 3}, 1, nullptr, &t).ok());

  WireTensor short_payload = t;
  short_payload.payload.pop_back();
  EXPECT_THAT(std::string(ValidateTensor(short_payload).message()), HasSubstr("payload bytes"));

  WireTensor bad_bits = t;
  bad_bits.bits = 9;
  EXPECT_FALSE(ValidateTensor(bad_bits).ok());

  WireTensor bad_slices = t;
  bad_slices.slices.resize(5);
  EXPECT_THAT(std::string(ValidateTensor(bad_slices).message()), HasSubstr("divide"));

  WireTensor nan_scale = t;
  nan_scale.slices[1].step = std::nanf("");
  EXPECT_FALSE(ValidateTensor(nan_scale).ok());

  WireTensor zero_dim = t;
  zero_dim.shape = {3, 0};
  EXPECT_FALSE(ValidateTensor(zero_dim).ok());

  WireTensor huge = t;
  huge.shape = {65536, 65536, 65536};
  EXPECT_FALSE(ValidateTensor(huge).ok());

  // Code 15 with K = 4 is outside [0, 14].
  WireTensor bad_code = t;
  bad_code.payload[0] = static_cast<char>(0xFF);
  std::vector<float> out(12);
  EXPECT_THAT(std::string(DecodeTensor(bad_code, absl::MakeSpan(out)).message()),
              HasSubstr("exceeds"));

  WireTensor fp32 = Shaped({2});
  const float nan_values[] = {1.0f, std::nanf("")};
  EXPECT_FALSE(EncodeUpdate(nan_values, {Codec::kFp32, 0, 1}, 0, nullptr, &fp32).ok());
  fp32.codec = Codec::kFp32;
  fp32.payload.assign(reinterpret_cast<const char*>(nan_values), 8);
  std::vector<float> two(2);
  EXPECT_THAT(std::string(DecodeTensor(fp32, absl::MakeSpan(two)).message()),
              HasSubstr("not finite"));

  std::vector<float> residual(3);
  EXPECT_FALSE(EncodeUpdate(v, {Codec::kSignEf, 1, 3}, 0, &residual, &t).ok());
  EXPECT_FALSE(EncodeUpdate(v, {Codec::kQ, 4, 5}, 0, nullptr, &t).ok());
  EXPECT_FALSE(EncodeUpdate(v, {Codec::kMixed, 4, 1}, 0, nullptr, &t).ok());
}

TEST(UpdateCodecTest, CheckUpdateBoundsEveryCodecsMagnitude) {
  std::vector<float> values = RandomValues(256, 11, 0.1f);
  values[17] = 3.0f;  // the largest by far
  for (Codec codec : {Codec::kFp32, Codec::kFp16, Codec::kQ, Codec::kSignEf}) {
    WireTensor t = Shaped({16, 16});
    std::vector<float> residual(values.size(), 0.0f);
    ASSERT_TRUE(EncodeUpdate(values, {codec, 4, 16}, 1, &residual, &t).ok());
    std::vector<float> decoded = Decoded(t);
    float largest = 0;
    for (float v : decoded) largest = std::max(largest, std::fabs(v));
    SCOPED_TRACE(CodecName(codec));
    EXPECT_TRUE(CheckUpdate(t, largest).ok());
    const absl::Status over = CheckUpdate(t, largest * 0.99f);
    EXPECT_EQ(ReasonOf(over), RejectReason::kTooLarge) << over;
  }
}

TEST(UpdateCodecTest, CheckUpdateTagsNonFiniteAndHugeFp32) {
  std::vector<float> values(64, 0.5f);
  WireTensor t = Shaped({64});
  values[9] = 3e38f;  // finite, but would overflow a running sum
  ASSERT_TRUE(EncodeUpdate(values, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
  EXPECT_EQ(ReasonOf(CheckUpdate(t, 1e6f)), RejectReason::kTooLarge);
  const float nan = std::nanf("");
  std::memcpy(&t.payload[4 * 9], &nan, 4);
  const absl::Status s = CheckUpdate(t, 1e6f);
  EXPECT_EQ(ReasonOf(s), RejectReason::kNonFinite) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("element 9"));
  // A checked tensor folds with no second scan.
  values[9] = 0.5f;
  ASSERT_TRUE(EncodeUpdate(values, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
  ASSERT_TRUE(CheckUpdate(t, 1.0f).ok());
  std::vector<float> sum(64, 1.0f);
  ASSERT_TRUE(AccumulateChecked(t, 2.0f, absl::MakeSpan(sum)).ok());
  EXPECT_EQ(sum[0], 2.0f);
  EXPECT_FALSE(AccumulateChecked(t, 2.0f, absl::MakeSpan(sum).subspan(1)).ok());
}

TEST(UpdateCodecTest, ErrorFeedbackPersists) {
  ErrorFeedback ef;
  ef.Residual("fc1.weight", 5)[2] = 0.5f;
  ef.Residual("conv1.weight", 3)[0] = -1.25f;
  const std::string path = TempPath("ef.bin");
  ASSERT_TRUE(ef.Save(path).ok());
  ErrorFeedback loaded;
  ASSERT_TRUE(loaded.Load(path).ok());
  EXPECT_EQ(loaded.size(), 2u);
  EXPECT_EQ(loaded.Residual("fc1.weight", 5)[2], 0.5f);
  EXPECT_EQ(loaded.Residual("conv1.weight", 3)[0], -1.25f);
  // A residual of another size is reset.
  EXPECT_EQ(loaded.Residual("conv1.weight", 4)[0], 0.0f);

  // Corrupt a byte: the load fails and leaves the state as it was.
  FILE* f = std::fopen(path.c_str(), "r+b");
  ASSERT_NE(f, nullptr);
  std::fseek(f, 30, SEEK_SET);
  std::fputc(0x7F, f);
  std::fclose(f);
  ErrorFeedback untouched;
  untouched.Residual("x", 1)[0] = 3.0f;
  const absl::Status status = untouched.Load(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_EQ(untouched.Residual("x", 1)[0], 3.0f);
  EXPECT_EQ(untouched.Load(TempPath("missing.bin")).code(), absl::StatusCode::kNotFound);
}

TEST(UpdateCodecTest, AResidualThatCannotBeSavedLeavesTheLastGoodOne) {
  const std::string path = TempPath("ef-faults.bin");
  ErrorFeedback ef;
  ef.Residual("w", 2)[0] = 1.5f;
  FaultyEnv env(Env::Default());
  ASSERT_TRUE(ef.Save(path, &env).ok());
  ef.Residual("w", 2)[0] = 7.0f;  // the next task's residual
  for (FaultyEnv::Fault fault : {FaultyEnv::Fault::kWrite, FaultyEnv::Fault::kSync,
                                 FaultyEnv::Fault::kRename, FaultyEnv::Fault::kDiskFull,
                                 FaultyEnv::Fault::kTornWrite}) {
    env.Inject(fault);
    EXPECT_FALSE(ef.Save(path, &env).ok());
    env.Clear();
    ErrorFeedback loaded;
    ASSERT_TRUE(loaded.Load(path, &env).ok());  // never torn, never empty
    EXPECT_EQ(loaded.Residual("w", 2)[0], 1.5f);
  }
  ASSERT_TRUE(ef.Save(path, &env).ok());
  ErrorFeedback loaded;
  ASSERT_TRUE(loaded.Load(path, &env).ok());
  EXPECT_EQ(loaded.Residual("w", 2)[0], 7.0f);
}

}  // namespace
}  // namespace fedge
