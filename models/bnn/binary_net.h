#ifndef FEDGE_MODELS_BINARY_NET_H_
#define FEDGE_MODELS_BINARY_NET_H_

// A binary network trained with memory-saving backprop (design 4.2): binary
// weights and activations, l1 batch norm after every layer (after the pool
// where there is one), saved activations bit-packed, and each row of the
// design's table switchable so its effect can be measured:
//
//   MemorySavingOptions options;       // everything on by default
//   options.sign_weight_grads = false;  // float dW instead of 1 bit
//   MemorySavingNet net(arch, options, &ledger);
//
// Not thread-safe.

#include <memory>
#include <string>
#include <vector>

#include "models/bnn/arch.h"
#include "models/bnn/binary_ops.h"
#include "models/memory/memory_ledger.h"
#include "models/bnn/trainable_net.h"

namespace fedge {

struct MemorySavingOptions {
  bool half_latent_weights = true;   // latent weights in float16
  bool sign_weight_grads = true;     // dW as 1-bit sign + scale
  // With sign_weight_grads: the first and the last weight layer keep their
  // float dW too (false) or get 1-bit dW like the rest (true).
  bool sign_edge_weight_grads = true;
  bool half_optimizer_state = true;  // Adam m, v in bfloat16
  GradXPrecision grad_x = GradXPrecision::kBFloat16;
  int act_bits = 1;          // saved hidden activations: 1 (sign) .. 8 bits
  float act_range = 2.0f;    // k-bit activations: step = range / (2^(k-1)-1)
  bool bit_kernels = true;   // false: float convolutions (ConvConfig)
  double learning_rate = 1e-3;
  double bn_momentum = 0.1;
  uint64_t seed = 1;
};

class MemorySavingNet : public TrainableNet {
 public:
  // `ledger` may be null; it must outlive the network.
  MemorySavingNet(const ArchSpec& arch, const MemorySavingOptions& options,
                  MemoryLedger* ledger);
  ~MemorySavingNet() override;

  std::string name() const override { return "memory-saving"; }
  at::Tensor Forward(const at::Tensor& x, bool training) override;
  void Step() override;
  int64_t StateBytes(StateKind kind) const override;
  int64_t ParameterCount() const override;

  // Every tensor of the model by name, with its layer index: latent weights
  // ("conv1.weight", float16), l1 batch norm shifts ("conv1.beta") and
  // running statistics ("conv1.running_mean", "conv1.running_sigma"). The
  // norm after a pooled convolution belongs to the pool's layer.
  std::vector<NamedTensor> Named();
  // Layers before `layer` run frozen: forward only, no gradients, nothing
  // saved for backward, no optimizer state touched.
  void FreezeBefore(int layer);
  int layer_count() const { return static_cast<int>(layers_.size()); }
  void set_learning_rate(double lr) override { options_.learning_rate = lr; }
  void ResetOptimizer() override;
  // Sets every norm's running statistics to those of `batch` (a forward
  // pass in training mode that replaces rather than averages): an initial
  // model whose statistics are on the scale of its popcount sums, not 0
  // and 1.
  void SetNormStatistics(const at::Tensor& batch);

 private:
  struct Layer;
  std::vector<std::unique_ptr<Layer>> layers_;
  MemorySavingOptions options_;
  int64_t step_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_MODELS_BINARY_NET_H_
