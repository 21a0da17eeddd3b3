#include "models/memory/memory_model.h"

#include <algorithm>

namespace fedge {

TrainingBits StandardTrainingBits() { return TrainingBits(); }

TrainingBits MemorySavingTrainingBits(bool pow2_grad_x) {
  TrainingBits bits;
  bits.weight = 16;
  bits.weight_grad = 1;
  bits.moment1 = 16;
  bits.moment2 = 16;
  bits.activation = 1;
  bits.first_activation = 32;
  bits.grad_x1 = 16;
  bits.grad_x2 = pow2_grad_x ? 5 : 16;
  return bits;
}

TrainingBits PaperTrainingBits() {
  TrainingBits bits = MemorySavingTrainingBits(/*pow2_grad_x=*/true);
  bits.first_activation = 1;
  return bits;
}

MemoryModel ModelTrainingMemory(const ArchSpec& arch, int batch,
                                const TrainingBits& bits) {
  MemoryModel model;
  const int first = arch.first_weight_layer();
  const int state_bits =
      bits.weight + bits.weight_grad + bits.moment1 + bits.moment2;
  int64_t largest_input = 0;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const LayerSpec& layer = arch.layers[i];
    if (!layer.has_weights) continue;
    const int act_bits = static_cast<int>(i) == first ? bits.first_activation
                                                      : bits.activation;
    const int64_t inputs = layer.input_elements() * batch;
    LayerMemoryModel entry;
    entry.name = layer.name;
    // Round each term up to whole bytes, as a packed buffer would be.
    entry.weight_state_bytes = (layer.weight_count() * state_bits + 7) / 8;
    entry.activation_bytes = (inputs * act_bits + 7) / 8;
    model.weight_state_bytes += entry.weight_state_bytes;
    model.activation_bytes += entry.activation_bytes;
    largest_input = std::max(largest_input, inputs);
    model.layers.push_back(entry);
  }
  model.grad_buffer_bytes =
      (largest_input * (bits.grad_x1 + bits.grad_x2) + 7) / 8;
  return model;
}

int64_t QuantTrainingMemory(const QuantArch& arch, int trainable_from, int batch) {
  int64_t bytes = int64_t{2} << 20;  // LibTorch scratch
  int64_t transient = 0;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const QuantLayerSpec& l = arch.layers[i];
    const int64_t out = int64_t{l.out_channels} * l.out_height * l.out_width;
    transient = std::max(transient, 4 * (l.input_elements() + 2 * out));
    if (static_cast<int>(i) < trainable_from) {
      bytes += 12 * l.weight_count();
    } else {
      bytes += 52 * l.weight_count() + batch * (l.input_elements() * 9 / 8 + 12 * out);
    }
  }
  return bytes + batch * transient;
}

int64_t BinaryTrainingMemory(const ArchSpec& arch, int trainable_from, int batch) {
  int64_t saved = 0, largest_output = 0, largest_conv = 0, largest_linear = 0;
  const int first = arch.first_weight_layer();
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const LayerSpec& l = arch.layers[i];
    largest_output = std::max(largest_output, l.output_elements());
    if (static_cast<int>(i) < trainable_from || !l.has_weights) continue;
    if (l.kind == LayerKind::kConv) {
      largest_conv = std::max(largest_conv, l.weight_count());
    } else {
      largest_linear = std::max(largest_linear, l.weight_count());
    }
    saved += static_cast<int>(i) == first ? 4 * batch * l.input_elements()
                                         : batch * l.input_elements() / 4;
  }
  return (int64_t{1} << 20) + saved + 8 * batch * largest_output + 9 * largest_conv +
         2 * largest_linear;
}

}  // namespace fedge
