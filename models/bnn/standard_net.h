#ifndef FEDGE_MODELS_STANDARD_NET_H_
#define FEDGE_MODELS_STANDARD_NET_H_

// The reference every memory and speed figure is compared against: standard
// BNN training (Courbariaux & Bengio) in plain LibTorch. float32 everything,
// autograd saves what it saves, standard batch norm (gamma and beta), a
// clamp-based straight-through estimator for binary activations and weights,
// torch::optim::Adam. Same architecture and layer order as MemorySavingNet.
//
// Not thread-safe.

#include <memory>
#include <string>

#include "models/bnn/arch.h"
#include "models/bnn/trainable_net.h"

namespace fedge {

struct StandardOptions {
  double learning_rate = 1e-3;
  double bn_momentum = 0.1;
  uint64_t seed = 1;
};

class StandardNet : public TrainableNet {
 public:
  StandardNet(const ArchSpec& arch, const StandardOptions& options);
  ~StandardNet() override;

  std::string name() const override { return "standard"; }
  at::Tensor Forward(const at::Tensor& x, bool training) override;
  void Step() override;
  void set_learning_rate(double lr) override;
  void ResetOptimizer() override;
  int64_t StateBytes(StateKind kind) const override;
  int64_t ParameterCount() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedge

#endif  // FEDGE_MODELS_STANDARD_NET_H_
