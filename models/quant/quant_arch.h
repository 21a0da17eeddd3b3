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

struct QuantArch {
  std::string name;
  int in_channels = 1, in_height = 28, in_width = 28;
  std::vector<QuantLayerSpec> layers;
  int64_t weight_count() const;
  int64_t activation_elements() const;
};

// "fmnist-cnn" (1x28x28: conv 32, pool, conv 64, pool, fc 128, fc 10),
// "fmnist-mlp" (784-256-10), and at 3x224x224 "mobilenetv2",
// "efficientnet-lite0", "resnet18".
std::vector<std::string> KnownQuantArchNames();
absl::StatusOr<QuantArch> MakeQuantArch(absl::string_view name);

}  // namespace fedge

#endif  // FEDGE_MODELS_QUANT_ARCH_H_
