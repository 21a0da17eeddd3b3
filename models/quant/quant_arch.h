#ifndef FEDGE_MODELS_QUANT_ARCH_H_
#define FEDGE_MODELS_QUANT_ARCH_H_

// Mixed-precision architectures as flat lists of weight layers (design 4.1),
// free of LibTorch: enough to account weights and activations per layer for
// the size model, and to build the trainable QuantNet for the small ones.
// Each layer's input is one quantized activation tensor.
//
//   ASSIGN_OR_RETURN(QuantArch net, MakeQuantArch("mobilenetv2"));
//
// Plain values; thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/shape/layer_shape.h"

namespace fedge {

enum class QuantLayerKind { kConv, kDepthwise, kLinear };

struct QuantLayerSpec : LayerShape {
  std::string name;
  QuantLayerKind kind = QuantLayerKind::kConv;
  int stride = 1, padding = 0;
  bool pool_after = false;  // 2x2 max pool after the layer (small nets)

  // One weight slice (and bit-width) per output channel for convolutions,
  // depthwise included; one per tensor for linear layers.
  int slices() const { return kind == QuantLayerKind::kLinear ? 1 : out_channels; }
};

// How the size model counts a network (design 4.1).
//   kReference  the reference implementation's accounting: the network's
//               input image is fixed input, neither a learned quantizer nor
//               counted; the classifier's bias (float32) counts with the
//               weights.
//   kProject    every layer's input counted, the image included (its
//               quantizer learned like the others); biases not counted.
enum class SizeAccounting : uint8_t { kReference = 0, kProject = 1 };
inline constexpr int kBiasBits = 32;

struct QuantArch {
  std::string name;
  int in_channels = 1, in_height = 28, in_width = 28;
  std::vector<QuantLayerSpec> layers;
  SizeAccounting accounting = SizeAccounting::kReference;

  int64_t weight_count() const;         // quantized weights
  int64_t activation_elements() const;  // every layer's input, per sample
  // Whether layer i's input counts as an activation (and its quantizer
  // learns): all but the image under the reference accounting.
  bool counts_input(size_t layer) const {
    return layer > 0 || accounting == SizeAccounting::kProject;
  }
  int64_t counted_activation_elements() const;
  int64_t bias_count() const;  // counted biases: the classifier's, or none
  double bias_kb() const { return static_cast<double>(bias_count()) * kBiasBits / 8000.0; }
  // Budgets in kB at an average bit-width: weights at `bits` plus the
  // counted float32 bias as it is (so the uniform `bits` model meets its own
  // budget exactly); activations at `bits` over those counted.
  double WeightBudgetKb(double bits) const;
  double ActivationBudgetKb(double bits) const;
};

const char* SizeAccountingName(SizeAccounting accounting);
// "reference" or "project".
absl::StatusOr<SizeAccounting> ParseSizeAccounting(absl::string_view name);

// "fmnist-cnn" (1x28x28: conv 32, pool, conv 64, pool, fc 128, fc 10),
// "fmnist-mlp" (784-256-10), and at 3x224x224 "mobilenetv2",
// "efficientnet-lite0", "resnet18".
std::vector<std::string> KnownQuantArchNames();
absl::StatusOr<QuantArch> MakeQuantArch(absl::string_view name);

}  // namespace fedge

#endif  // FEDGE_MODELS_QUANT_ARCH_H_
