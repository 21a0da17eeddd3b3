#ifndef FEDGE_MODELS_MEMORY_MODEL_H_
#define FEDGE_MODELS_MEMORY_MODEL_H_

// The training-memory models: of binary networks, design 4.2 (Wang et al.,
// "Enabling Binary Neural Network Training on the Edge"):
//
//   Mem = [ sum_l k^2 m n (b_W + b_dW + b_m1 + b_m2)
//         + sum_l x y m B b_act
//         + max_l(x y m B) (b_dX1 + b_dX2) ] / 8 bytes
//
// over the layers with weights, for a given set of bit-widths. Free of
// LibTorch; thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "models/bnn/arch.h"
#include "models/quant/quant_arch.h"

namespace fedge {

struct TrainingBits {
  int weight = 32;            // latent weights W
  int weight_grad = 32;       // dW
  int moment1 = 32;           // Adam m
  int moment2 = 32;           // Adam v
  int activation = 32;        // saved input of each weight layer
  int first_activation = 32;  // saved input of the first layer (the image)
  int grad_x1 = 32;           // the two activation-gradient buffers
  int grad_x2 = 32;
};

// Standard BNN training (Courbariaux & Bengio): float32 everywhere.
TrainingBits StandardTrainingBits();
// This method: 16-bit latent weights and moments, 1-bit dW, 1-bit saved
// activations (the first layer keeps its real 32-bit input), 16-bit
// activation gradients, or 16 + 5 with `pow2_grad_x`.
TrainingBits MemorySavingTrainingBits(bool pow2_grad_x = false);
// The same method under the paper's spreadsheet conventions: the two
// activation-gradient buffers at 16 + 5 bits and the first layer's input
// counted at 1 bit like every other saved activation.
TrainingBits PaperTrainingBits();

struct LayerMemoryModel {
  std::string name;
  int64_t weight_state_bytes = 0;  // W, dW, m, v
  int64_t activation_bytes = 0;    // saved input for the whole batch
};

struct MemoryModel {
  std::vector<LayerMemoryModel> layers;  // weight layers only
  int64_t weight_state_bytes = 0;
  int64_t activation_bytes = 0;
  int64_t grad_buffer_bytes = 0;  // max_l(x y m B) (b_dX1 + b_dX2) / 8
  int64_t total_bytes() const {
    return weight_state_bytes + activation_bytes + grad_buffer_bytes;
  }
};

MemoryModel ModelTrainingMemory(const ArchSpec& arch, int batch,
                                const TrainingBits& bits);

// The training memory of a mixed-precision network (design 4.1) whose
// layers [trainable_from, end) train and the others run frozen, at `batch`:
// what the shard planner budgets each agent's task by.
// The training-memory estimate of a task training layers [from, end):
//   frozen layers: 12 B per weight (the float32 weight, its quantized copy
//     and one temporary of the quantizer);
//   trainable layers: 52 B per weight (weight, gradient, two Adam moments
//     and Adam's temporaries, the quantized copy and the quantizer
//     backward's temporaries: about 13 float copies, measured), plus per
//     sample what backward keeps: the packed input codes and mask (9/8 B per
//     input element) and the float saves of batch norm, ReLU and pooling
//     (12 B per output element);
//   the forward pass's float transients: per sample, the largest layer's
//     input plus two of its outputs;
//   a fixed 2 MB for LibTorch's scratch buffers.
// It is calibrated against the peak the agent measures with its counting
// allocator (device_agent/planner_calibration_test.cc checks that it bounds
// the measured peak and is not more than twice it).
//
int64_t QuantTrainingMemory(const QuantArch& arch, int trainable_from, int batch);

// The same estimate for a binary network trained with memory-saving backprop
// (MemorySavingNet) whose layers [trainable_from, end) train: what one task's
// training allocates beyond the state the agent holds between tasks (the
// 16-bit latent weights and Adam moments, 6 B per weight, part of the
// process's baseline and not of this budget):
//   the forward pass's float transients: the largest layer output, and the
//     l1 norm's output beside it (8 B per element and sample), for frozen
//     and trainable layers alike;
//   the weight gradient's scratch of the largest trainable layer: 9 B per
//     weight for a convolution (the weights in float, the float dW and its
//     byte-expanded sign operand), 2 B for a linear layer;
//   what backward keeps of the trainable layers: 1-bit signs and a 1-bit
//     mask per input element (float32 for the real image);
//   1 MB for scratch buffers.
// Calibrated against the agent's measured peak on CNV
// (device_agent/planner_calibration_test.cc: at least the peak, at most
// 1.5x it, every trainable suffix, batch 8 and 64).
int64_t BinaryTrainingMemory(const ArchSpec& arch, int trainable_from, int batch);

}  // namespace fedge

#endif  // FEDGE_MODELS_MEMORY_MODEL_H_
