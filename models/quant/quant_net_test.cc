#include "models/quant/quant_net.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <vector>

#include "common/codec/bit_pack.h"
#include "gtest/gtest.h"
#include "models/memory/counting_allocator.h"

namespace fedge {
namespace {

// With the inverse-tanh modification off, the packed-code path and the
// float path compute the same forward and the same weight gradients.
TEST(QuantNetTest, PackedPathMatchesFloatPath) {
  QuantNetOptions options;
  options.input_config.delta = 0;
  options.hidden_config.delta = 0;
  const QuantArch arch = *MakeQuantArch("fmnist-cnn");
  at::manual_seed(2);
  const at::Tensor x = at::randn({8, 1, 28, 28});
  const at::Tensor y = at::randint(10, {8}, at::kLong);
  QuantNet packed(arch, options), plain(arch, options);
  packed.Calibrate(x, 4);
  plain.Restore(packed.Snapshot());

  packed.SetQuantizersTrainable(false);  // packed path
  plain.SetQuantizersTrainable(false);
  // Learnable activation quantizers (d, xmax at 2 and 3 of every 4) put
  // `plain` on the float path.
  std::vector<at::Tensor> qp = plain.QuantizerParameters();
  for (size_t i = 2; i < qp.size(); i += 4) {
    qp[i].set_requires_grad(true);
    qp[i + 1].set_requires_grad(true);
  }
  const at::Tensor a = packed.Forward(x, true);
  const at::Tensor b = plain.Forward(x, true);
  EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-4)) << (a - b).abs().max().item<float>();
  at::nll_loss(at::log_softmax(a, 1), y).backward();
  at::nll_loss(at::log_softmax(b, 1), y).backward();
  const auto pw = packed.WeightParameters(), qw = plain.WeightParameters();
  for (size_t i = 0; i < pw.size(); ++i) {
    ASSERT_TRUE(pw[i].grad().defined()) << i;
    EXPECT_TRUE(at::allclose(pw[i].grad(), qw[i].grad(), 1e-3, 1e-4))
        << i << ": " << (pw[i].grad() - qw[i].grad()).abs().max().item<float>();
  }
}

// What the packed path keeps for backward: each layer's input as codes at
// its bit-width plus a 1-bit mask, and nothing in float behind the ledger.
TEST(QuantNetTest, PackedPathSavesCodesAtTheirBitWidth) {
  CountingCpuAllocator::Install();
  const QuantArch arch = *MakeQuantArch("fmnist-mlp");
  MemoryLedger ledger;
  QuantNet net(arch, QuantNetOptions(), &ledger);
  at::manual_seed(3);
  const at::Tensor x = at::randn({32, 1, 28, 28});
  net.Calibrate(x, 4);
  net.SetQuantizersTrainable(false);
  const at::Tensor logits = net.Forward(x, true);
  const auto bits = net.Bits();
  // fc1's input: 32 x 784 values at its bit-width, plus the mask.
  const auto layers = ledger.layers();
  const int64_t fc1 = PackedBytes(32 * 784, bits[0].activation_bits) + PackedBytes(32 * 784, 1);
  EXPECT_EQ(layers.at("fc1").held, fc1);
  const int64_t fc2 = PackedBytes(32 * 256, bits[1].activation_bits) + PackedBytes(32 * 256, 1);
  EXPECT_EQ(layers.at("fc2").held, fc2);
  EXPECT_LT(bits[0].activation_bits, 8);
  logits.sum().backward();
  EXPECT_EQ(ledger.saved_bytes(), 0);
  for (const at::Tensor& p : net.WeightParameters()) EXPECT_TRUE(p.grad().defined());
}

}  // namespace
}  // namespace fedge
