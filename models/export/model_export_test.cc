#include "models/export/model_export.h"

#include <ATen/ATen.h>

#include <cmath>

#include "gtest/gtest.h"
#include "models/quant/quant_arch.h"

namespace fedge {
namespace {

// A calibrated network whose slices sit at different bit-widths (2..6),
// with trained-looking batch-norm statistics.
std::unique_ptr<QuantNet> MixedNet(const std::string& arch_name) {
  auto net = std::make_unique<QuantNet>(*MakeQuantArch(arch_name), QuantNetOptions());
  at::manual_seed(3);
  net->Calibrate(at::randn({16, 1, 28, 28}), 4);
  at::NoGradGuard no_grad;
  for (NamedTensor& t : net->Named()) {
    const std::string& n = t.name;
    if (n.size() > 7 && n.substr(n.size() - 7) == ".w_step") {
      // Slice s gets a step 2^(s % 5 - 2) times the calibrated one.
      at::Tensor scale = at::pow(2.0, at::arange(t.tensor->numel()).remainder(5) - 2).to(at::kFloat);
      t.tensor->mul_(scale.reshape(t.tensor->sizes()));
    } else if (n.size() > 13 && n.substr(n.size() - 13) == ".running_mean") {
      t.tensor->normal_(0, 0.1);
    }
  }
  net->Constrain();
  return net;
}

TEST(ModelExportTest, ReloadGivesTheSamePredictions) {
  for (const char* arch : {"fmnist-cnn", "fmnist-mlp"}) {
    std::unique_ptr<QuantNet> net = MixedNet(arch);
    ExportReport report;
    absl::StatusOr<std::string> file = SerializeExportedModel(*net, &report);
    ASSERT_TRUE(file.ok()) << file.status();
    absl::StatusOr<std::unique_ptr<QuantNet>> loaded = ParseExportedModel(*file);
    ASSERT_TRUE(loaded.ok()) << loaded.status();

    const at::Tensor x = at::randn({64, 1, 28, 28});
    const at::Tensor a = net->Forward(x, /*training=*/false);
    const at::Tensor b = (*loaded)->Forward(x, /*training=*/false);
    EXPECT_TRUE(at::equal(a.argmax(1), b.argmax(1))) << arch;
    EXPECT_LE((a - b).abs().max().item<float>(), 1e-5f) << arch;
    // The same bit-widths, hence the same size.
    EXPECT_NEAR((*loaded)->Size().weight_kb, net->Size().weight_kb, 1e-9) << arch;
  }
}

TEST(ModelExportTest, BinarySlicesTravelAsSigns) {
  // fc1 (one slice) and half of conv1's slices binary: sign x scale.
  std::unique_ptr<QuantNet> net = MixedNet("fmnist-cnn");
  {
    at::NoGradGuard no_grad;
    for (NamedTensor& t : net->Named()) {
      if (t.name == "fc1.w_range" || t.name == "conv1.w_range") {
        const int64_t n = t.name == "fc1.w_range" ? 1 : t.tensor->numel() / 2;
        t.tensor->narrow(0, 0, n).fill_(0.05);
      }
    }
    for (NamedTensor& t : net->Named()) {
      if (t.name == "fc1.w_step" || t.name == "conv1.w_step") {
        const int64_t n = t.name == "fc1.w_step" ? 1 : t.tensor->numel() / 2;
        t.tensor->narrow(0, 0, n).fill_(0.2);
      }
    }
  }
  net->Constrain();
  const std::vector<LayerBits> bits = net->Bits();
  ASSERT_EQ(bits[2].weight_bits[0], 1);
  ASSERT_EQ(bits[0].weight_bits[0], 1);
  ASSERT_GT(bits[0].weight_bits.back(), 1);
  ExportReport report;
  absl::StatusOr<std::string> file = SerializeExportedModel(*net, &report);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_GE(report.packed_weight_bytes, report.size_model_weight_bytes);
  EXPECT_LE(report.packed_weight_bytes, report.size_model_weight_bytes + 4);
  absl::StatusOr<std::unique_ptr<QuantNet>> loaded = ParseExportedModel(*file);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const at::Tensor x = at::randn({64, 1, 28, 28});
  const at::Tensor a = net->Forward(x, /*training=*/false);
  const at::Tensor b = (*loaded)->Forward(x, /*training=*/false);
  EXPECT_LE((a - b).abs().max().item<float>(), 1e-5f);
  // The reloaded binary weights are exactly +-scale.
  for (NamedTensor& t : (*loaded)->Named()) {
    if (t.name == "fc1.weight") {
      EXPECT_TRUE(at::allclose(t.tensor->abs(), at::full_like(*t.tensor, 0.05)));
    }
  }
}

TEST(ModelExportTest, SizeOnDiskMatchesTheSizeModel) {
  std::unique_ptr<QuantNet> net = MixedNet("fmnist-cnn");
  ExportReport report;
  absl::StatusOr<std::string> file = SerializeExportedModel(*net, &report);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(report.file_bytes, static_cast<int64_t>(file->size()));
  EXPECT_EQ(report.file_bytes, report.packed_weight_bytes + report.other_bytes);
  // Each tensor's bitstream rounds up to whole bytes, nothing more.
  const int layers = static_cast<int>(net->arch().layers.size());
  EXPECT_GE(report.packed_weight_bytes, report.size_model_weight_bytes);
  EXPECT_LE(report.packed_weight_bytes, report.size_model_weight_bytes + layers);
  EXPECT_GT(report.mean_weight_bits, 1.5);
  EXPECT_LT(report.mean_weight_bits, 7);
  // At these bit-widths the file is far smaller than the float32 weights.
  int64_t weights = 0;
  for (const QuantLayerSpec& l : net->arch().layers) weights += l.weight_count();
  EXPECT_LT(report.file_bytes, 4 * weights / 3);
}

TEST(ModelExportTest, DamagedFilesAreRefused) {
  std::unique_ptr<QuantNet> net = MixedNet("fmnist-mlp");
  absl::StatusOr<std::string> file = SerializeExportedModel(*net, nullptr);
  ASSERT_TRUE(file.ok());
  std::string flipped = *file;
  flipped[flipped.size() / 2] ^= 0x10;
  EXPECT_EQ(ParseExportedModel(flipped).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE(ParseExportedModel(file->substr(0, file->size() - 3)).ok());
  EXPECT_FALSE(ParseExportedModel("FEDGEQM1").ok());
  EXPECT_FALSE(ParseExportedModel("not a model at all, not at all").ok());
  EXPECT_FALSE(LoadExportedModel("/nonexistent/model.fqm").ok());
}

}  // namespace
}  // namespace fedge
