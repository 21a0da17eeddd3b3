#ifndef FEDGE_MODELS_TRAINABLE_NET_H_
#define FEDGE_MODELS_TRAINABLE_NET_H_

// The interface the local trainer drives: the memory-saving network and the
// standard float32 reference implement it, so both train through the same
// loop and are measured by the same instruments.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "models/memory/memory_ledger.h"

namespace fedge {

// One tensor of a model by name ("conv1.weight", "conv1.running_mean", ...)
// and the index of its layer: what the coordinator distributes, aggregates
// and checkpoints as a model shard (models/quant/model_shards.h).
struct NamedTensor {
  std::string name;
  int layer = 0;
  at::Tensor* tensor = nullptr;
};

// Not thread-safe: one training thread owns a network.
class TrainableNet {
 public:
  virtual ~TrainableNet() = default;

  virtual std::string name() const = 0;
  // Logits [N, classes]. In training mode the autograd graph is recorded and
  // batch statistics are used; in evaluation mode running statistics are.
  virtual at::Tensor Forward(const at::Tensor& x, bool training) = 0;
  // One optimizer step from the gradients of the last backward, then clears
  // them. Errors throw c10::Error (the trainer guards the call).
  virtual void Step() = 0;
  // Learning rate of the next steps (a schedule changes it between steps;
  // the optimizer's moments are kept).
  virtual void set_learning_rate(double lr) = 0;
  // A fresh optimizer: moments and step count zeroed, as at the start of a
  // local task.
  virtual void ResetOptimizer() = 0;
  // Bytes of persistent training state, measured from the tensors held.
  virtual int64_t StateBytes(StateKind kind) const = 0;
  // Number of trainable scalars.
  virtual int64_t ParameterCount() const = 0;
};

}  // namespace fedge

#endif  // FEDGE_MODELS_TRAINABLE_NET_H_
