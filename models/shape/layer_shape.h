#ifndef FEDGE_MODELS_SHAPE_LAYER_SHAPE_H_
#define FEDGE_MODELS_SHAPE_LAYER_SHAPE_H_

// The sizes of one layer, as both network families describe them: the
// binary networks (models/bnn/arch.h, LayerSpec) and the mixed-precision
// ones (models/quant/quant_arch.h, QuantLayerSpec) add their own kind and
// options to this one shape, so a weight count or an activation size is
// worked out in one place for the memory model, the size model, the shard
// planner and the network builders alike.
//
//   LayerShape conv;  conv.in_channels = 32;  conv.out_channels = 64;  conv.kernel = 3;
//   conv.weight_count();  // 3 * 3 * 32 * 64
//
// Plain values; thread-compatible.

#include <cstdint>

namespace fedge {

// A network's input image: channels x height x width.
struct InputShape {
  int channels = 1;
  int height = 28;
  int width = 28;
};

struct LayerShape {
  int in_channels = 0;   // m (the flattened input size for a linear layer)
  int out_channels = 0;  // n
  int kernel = 1;        // k (1 for linear layers)
  int in_height = 1, in_width = 1;
  int out_height = 1, out_width = 1;
  // Input channels each group of filters sees, in groups: 1 for a dense
  // convolution or a linear layer, in_channels for a depthwise one.
  int groups = 1;
  bool has_weights = true;  // false for pools

  // k * k * (m / groups) * n, 0 without weights.
  int64_t weight_count() const {
    if (!has_weights) return 0;
    return int64_t{kernel} * kernel * (in_channels / groups) * out_channels;
  }
  int64_t input_elements() const { return int64_t{in_channels} * in_height * in_width; }
  int64_t output_elements() const { return int64_t{out_channels} * out_height * out_width; }
};

}  // namespace fedge

#endif  // FEDGE_MODELS_SHAPE_LAYER_SHAPE_H_
