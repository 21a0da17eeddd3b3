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

#include <functional>
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
  // A fresh optimizer (moments and step count zeroed), as at the start of
  // every local task.
  void ResetOptimizer();
  // Sets every norm's running statistics to those of `batch` (a forward
  // pass in training mode that replaces rather than averages): an initial
  // model whose statistics are on the scale of its popcount sums, not 0
  // and 1.
  void SetNormStatistics(const at::Tensor& batch);
  // Measures each trainable norm's statistics as evaluation sees them:
  // forward passes in evaluation mode over the batches `next` yields (it
  // returns false when there are no more), in which every norm normalizes
  // with its running statistics, so each layer's input is what it is at
  // test time; each norm's per-channel mean and mean absolute deviation of
  // its input, averaged over the samples, then replace its running
  // statistics. Statistics kept from training batches differ: every layer
  // there normalized with its batch's own statistics, which on one board's
  // non-IID data are not the fleet's. A frozen layer's statistics stay.
  void MeasureNormStatistics(const std::function<bool(at::Tensor*)>& next);

 private:
  struct Layer;
  struct NormSums {
    at::Tensor mean, deviation;  // per channel, summed over samples
  };
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<NormSums>* measuring_ = nullptr;  // during MeasureNormStatistics
  MemorySavingOptions options_;
  int64_t step_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_MODELS_BINARY_NET_H_
