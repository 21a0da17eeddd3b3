#ifndef FEDGE_MODELS_ARCH_H_
#define FEDGE_MODELS_ARCH_H_

// Architecture descriptions, free of LibTorch: the ordered layers of a
// network with every shape worked out, for the memory and size models, the
// shard planner and the network builders alike.
//
//   ASSIGN_OR_RETURN(ArchSpec cnv, MakeArch("cnv", {1, 32, 32}));
//   for (const LayerSpec& layer : cnv.layers) ...
//
// Plain values; thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/shape/layer_shape.h"

namespace fedge {

enum class LayerKind { kConv, kMaxPool, kLinear };

// One layer. Convolutions are square, stride 1; pools are 2x2, stride 2,
// floor mode; linear layers flatten their input. Every layer is followed by
// l1 batch norm (design 4.2), after the pool where there is one.
struct LayerSpec : LayerShape {
  LayerKind kind = LayerKind::kConv;
  std::string name;
  int padding = 0;
};

struct ArchSpec {
  std::string name;
  InputShape input;
  int num_classes = 10;
  std::vector<LayerSpec> layers;

  int64_t weight_count() const;
  // Index of the first layer with weights whose input is the real image.
  int first_weight_layer() const;
};

// Names MakeArch knows.
std::vector<std::string> KnownArchNames();

// The reference architectures of design 4.2: "mlp" (784-256-256-256-256-10 for
// a 1x28x28 input, first layer sized to the input), "cnv" (conv 64, 64, pool,
// 128, 128, pool, 256, 256 with valid padding; fc 512, 512, classes) and
// "binarynet" (conv 128, 128, pool, 256, 256, pool, 512, 512, pool with same
// padding; fc 1024, 1024, classes). Fails with kInvalidArgument for an
// unknown name, a non-positive shape, or an input too small for the
// architecture (naming the layer whose output would be empty).
absl::StatusOr<ArchSpec> MakeArch(absl::string_view name, InputShape input,
                                  int num_classes = 10);

// "1x28x28" -> InputShape.
absl::StatusOr<InputShape> ParseInputShape(absl::string_view text);

}  // namespace fedge

#endif  // FEDGE_MODELS_ARCH_H_
