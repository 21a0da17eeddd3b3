#ifndef FEDGE_MODELS_FAMILY_MODEL_SPEC_H_
#define FEDGE_MODELS_FAMILY_MODEL_SPEC_H_

// What the federation trains, by name, whichever family it belongs to:
//   fmnist-cnn, fmnist-mlp   mixed-precision networks (design 4.1): learned
//                            per-slice bit-widths, the three-phase schedule
//   mlp, cnv, binarynet      binary networks (design 4.2) trained with
//                            memory-saving backprop: binary weights and
//                            activations, l1 batch norm, 1-bit saved
//                            activations and dW, 16-bit state
// Binary networks are built for the data's input shape (default 1x28x28 for
// mlp, 1x32x32 for cnv and binarynet: Fashion-MNIST padded); the
// mixed-precision ones take 1x28x28. Free of LibTorch, so the coordinator's
// planner and configuration use it without the framework; the trainable
// model behind it is models/family/federated_model.h.
//
//   ASSIGN_OR_RETURN(ModelSpec spec, MakeModelSpec("cnv", std::nullopt));
//   spec.layer_count();  spec.TrainingMemory(/*trainable_from=*/5, /*batch=*/64);
//
// Plain values; thread-compatible.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/bnn/arch.h"
#include "models/quant/quant_arch.h"
#include "models/shape/layer_shape.h"

namespace fedge {

enum class ModelFamily { kMixedPrecision, kBinary };

struct ModelSpec {
  std::string name;
  ModelFamily family = ModelFamily::kMixedPrecision;
  InputShape input;
  int num_classes = 10;
  QuantArch quant;  // kMixedPrecision
  ArchSpec binary;  // kBinary

  // Layers by index, as the shard planner's trainable suffix counts them
  // (pools of binary networks included: they have no tensors to train).
  int layer_count() const;
  // The training-memory estimate of a task that trains layers [from, end)
  // at `batch` (models/memory/memory_model.h): the planner's budget unit.
  int64_t TrainingMemory(int trainable_from, int batch) const;
  // "binary network cnv, 1x32x32, 10 classes, 1,543,936 parameters"
  std::string Describe() const;
};

// The LoadOptions::pad_to that fits Fashion-MNIST's 1x28x28 images to the
// model's input: 0 for 28x28, the size for a larger square one-channel
// input; an error naming the input otherwise.
absl::StatusOr<int> FashionMnistPadding(const ModelSpec& spec);

// Every name MakeModelSpec knows, mixed-precision ones first.
std::vector<std::string> KnownModelNames();

// `input` (binary networks only) overrides the default input shape, and
// `num_classes` (> 0) the default class count (10 for binary networks); a
// mixed-precision network given another shape or class count than its own
// is an error.
absl::StatusOr<ModelSpec> MakeModelSpec(absl::string_view name, std::optional<InputShape> input,
                                        int num_classes = 0);

}  // namespace fedge

#endif  // FEDGE_MODELS_FAMILY_MODEL_SPEC_H_
