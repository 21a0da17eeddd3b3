#ifndef FEDGE_MODELS_QUANT_NET_H_
#define FEDGE_MODELS_QUANT_NET_H_

// A trainable mixed-precision network built from a QuantArch: every layer's
// weights pass through a learned quantizer (one step and range per output
// channel, or per tensor for linear layers) and every layer's input through a
// learned activation quantizer (signed for the image, unsigned after ReLU).
// Hidden layers are followed by batch norm and ReLU. The size of the network
// at its current bit-widths is differentiable for the size penalty.
//
// While the activation quantizers are frozen (pretrain, finetune, and the
// learn-precision steps between quantizer updates) each layer runs through
// the packed-code path of binary_ops.h: it keeps its quantized input for
// backward as integer codes at the current bit-width plus a 1-bit clip mask,
// not as float32. When they learn, the float input is kept, since their
// step and range gradients need it.
//
//   QuantNet net(arch, QuantNetOptions());
//   net.Calibrate(first_batch, /*bits=*/8);
//   at::Tensor logits = net.Forward(x, /*training=*/true);
//
// Not thread-safe.

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "models/bnn/trainable_net.h"
#include "models/memory/memory_ledger.h"
#include "models/quant/quant_arch.h"
#include "models/quant/quantizer.h"
#include "models/quant/size_model.h"

namespace fedge {

struct QuantNetOptions {
  QuantizerConfig weight_config = WeightQuantizerConfig();
  QuantizerConfig input_config = ActivationQuantizerConfig(/*is_signed=*/true);
  QuantizerConfig hidden_config = ActivationQuantizerConfig(/*is_signed=*/false);
  double bn_momentum = 0.1;
  uint64_t seed = 1;
  // false: a plain float network of the same layers (the central reference
  // for the federated accuracy benchmark); quantizers are ignored.
  bool quantize = true;
};

class QuantNet {
 public:
  // `ledger` (optional) records what the packed path saves; it must outlive
  // the network.
  QuantNet(const QuantArch& arch, const QuantNetOptions& options,
           MemoryLedger* ledger = nullptr);
  ~QuantNet();

  const QuantArch& arch() const { return arch_; }
  // The size model's accounting (WeightKb, ActivationKb, Size, and whether
  // the image's quantizer learns).
  void set_accounting(SizeAccounting accounting) { arch_.accounting = accounting; }
  at::Tensor Forward(const at::Tensor& x, bool training);

  // Initialises every quantizer at `bits` (design 4.1): weights from their
  // statistics, activations from the 99.9th percentile on `batch`.
  void Calibrate(const at::Tensor& batch, int bits);

  // Every tensor of the model by name ("conv1.weight", "conv1.w_step",
  // "conv1.running_mean", ...) with its layer index: the shards the
  // coordinator distributes and aggregates.
  std::vector<NamedTensor> Named();

  // Layers before `layer` run frozen: forward only, no gradients, nothing
  // saved for backward (the shard planner's trainable suffix).
  void FreezeBefore(int layer);
  int trainable_from() const { return trainable_from_; }

  std::vector<at::Tensor> WeightParameters() const;     // weights, BN, bias
  std::vector<at::Tensor> QuantizerParameters() const;  // every d and xmax
  void SetQuantizersTrainable(bool trainable);
  // Applies the quantizer constraints after an update.
  void Constrain();

  // W and A (kB) at the current bit-widths, differentiable in d and xmax.
  at::Tensor WeightKb() const;
  at::Tensor ActivationKb() const;
  std::vector<LayerBits> Bits() const;
  SizeReport Size() const;

  // Brings W and A within `budget` (a term with budget 0 is left alone) by
  // taking one bit at a time from a weight slice or activation quantizer:
  // its range stays, its step becomes range / levels(b - 1) (capped at
  // d_max, the range then narrowed to levels(b - 1) steps); a weight slice
  // cut to 1 bit becomes binary, sign x its weights' mean magnitude. A cut
  // costs what it adds to its layer's mean relative noise (a layer's output
  // noise relative to its signal; summed over layers, the network's): per
  // element 12 E[(Q(x) - x)^2] / xmax^2 (measured on the weights; modelled
  // as uniform, d^2 / 12, for activations), times the cut's share n / N of
  // its layer. Where one cut alone covers what is left of the excess, the
  // one that costs least; otherwise the least per bit saved (so wide
  // quantizers and large layers give first, and a small tensor is cut
  // before a large one overshoots). A slice at its quantizer's floor (1 bit,
  // or 2 for a signed quantizer that may not be binary) gives nothing more.
  // Where the last cut overshot, bits go back, one at a time, where a bit
  // removes the most relative noise and fits in the room left (never to a
  // binary slice). A model within its budget is left as it is. Run where
  // bit-widths freeze (the start of finetune), so the weights then adapt to
  // the coarser codes.
  struct Projection {
    int weight_cuts = 0;         // bits taken from weight slices
    int activation_cuts = 0;     // bits taken from activation quantizers
    int weight_refills = 0;      // bits given back to weight slices
    int activation_refills = 0;  // bits given back to activation quantizers
    bool met = false;            // both terms within their budgets afterwards
  };
  Projection ProjectToBudget(const Budget& budget);

  // Copies of every tensor of the model (parameters, quantizers, running
  // statistics), for keeping the best checkpoint, and their restoration.
  std::vector<at::Tensor> Snapshot() const;
  void Restore(const std::vector<at::Tensor>& snapshot);

 private:
  struct Layer;
  QuantArch arch_;
  QuantNetOptions options_;
  std::vector<std::unique_ptr<Layer>> layers_;
  int trainable_from_ = 0;
};

}  // namespace fedge

#endif  // FEDGE_MODELS_QUANT_NET_H_
