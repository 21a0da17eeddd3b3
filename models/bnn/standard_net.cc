#include "models/bnn/standard_net.h"

#include <ATen/ATen.h>
#include <torch/optim/adam.h>

#include <cmath>
#include <vector>

namespace fedge {
namespace {

// sign(x) forward, hardtanh's gradient (1 where |x| <= 1) backward.
at::Tensor BinarizeSte(const at::Tensor& x) {
  const at::Tensor clipped = at::hardtanh(x);
  const at::Tensor sign =
      at::where(x >= 0, at::ones({}, x.options()), at::full({}, -1.0, x.options()));
  return clipped + (sign - clipped).detach();
}

}  // namespace

struct StandardNet::Impl {
  struct Layer {
    LayerSpec spec;
    bool real_input = false;
    at::Tensor weight;
    bool has_norm = false;
    at::Tensor gamma, beta, running_mean, running_var;
  };
  std::vector<Layer> layers;
  std::unique_ptr<torch::optim::Adam> adam;
  double bn_momentum = 0.1;
};

StandardNet::StandardNet(const ArchSpec& arch, const StandardOptions& options)
    : impl_(std::make_unique<Impl>()) {
  impl_->bn_momentum = options.bn_momentum;
  at::Generator gen = at::detail::createCPUGenerator(options.seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  std::vector<at::Tensor> params;
  const int first = arch.first_weight_layer();
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    Impl::Layer layer;
    layer.spec = arch.layers[i];
    const LayerSpec& spec = layer.spec;
    if (spec.has_weights) {
      layer.real_input = static_cast<int>(i) == first;
      std::vector<int64_t> shape = {spec.out_channels, spec.in_channels};
      if (spec.kind == LayerKind::kConv) {
        shape.push_back(spec.kernel);
        shape.push_back(spec.kernel);
      }
      const double fan = static_cast<double>(
          spec.weight_count() / spec.out_channels +
          spec.weight_count() / spec.in_channels);
      layer.weight = at::empty(shape, f32).uniform_(
          -std::sqrt(6.0 / fan), std::sqrt(6.0 / fan), gen);
      layer.weight.set_requires_grad(true);
      params.push_back(layer.weight);
    }
    const bool pool_next = i + 1 < arch.layers.size() &&
                           arch.layers[i + 1].kind == LayerKind::kMaxPool;
    if (!pool_next) {
      layer.has_norm = true;
      layer.gamma = at::ones({spec.out_channels}, f32).set_requires_grad(true);
      layer.beta = at::zeros({spec.out_channels}, f32).set_requires_grad(true);
      layer.running_mean = at::zeros({spec.out_channels}, f32);
      layer.running_var = at::ones({spec.out_channels}, f32);
      params.push_back(layer.gamma);
      params.push_back(layer.beta);
    }
    impl_->layers.push_back(std::move(layer));
  }
  impl_->adam = std::make_unique<torch::optim::Adam>(
      params, torch::optim::AdamOptions(options.learning_rate));
}

StandardNet::~StandardNet() = default;

void StandardNet::set_learning_rate(double lr) {
  for (torch::optim::OptimizerParamGroup& group : impl_->adam->param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  }
}

at::Tensor StandardNet::Forward(const at::Tensor& x, bool training) {
  at::Tensor h = x;
  for (Impl::Layer& layer : impl_->layers) {
    const LayerSpec& spec = layer.spec;
    switch (spec.kind) {
      case LayerKind::kMaxPool:
        h = at::max_pool2d(h, {2, 2}, {2, 2});
        break;
      case LayerKind::kLinear:
      case LayerKind::kConv: {
        if (spec.kind == LayerKind::kLinear && h.dim() != 2) h = h.flatten(1);
        const at::Tensor in = layer.real_input ? h : BinarizeSte(h);
        const at::Tensor w = BinarizeSte(layer.weight);
        h = spec.kind == LayerKind::kLinear
                ? at::linear(in, w)
                : at::conv2d(in, w, {}, {1, 1}, {spec.padding, spec.padding});
        break;
      }
    }
    if (layer.has_norm) {
      h = at::batch_norm(h, layer.gamma, layer.beta, layer.running_mean,
                         layer.running_var, training, impl_->bn_momentum,
                         1e-5, /*cudnn_enabled=*/false);
    }
  }
  return h;
}

// Adam creates a parameter's state, step count 0, when it finds none.
void StandardNet::ResetOptimizer() { impl_->adam->state().clear(); }

void StandardNet::Step() {
  impl_->adam->step();
  impl_->adam->zero_grad();
  at::NoGradGuard no_grad;
  for (Impl::Layer& layer : impl_->layers) {
    if (layer.weight.defined()) layer.weight.clamp_(-1, 1);
  }
}

int64_t StandardNet::StateBytes(StateKind kind) const {
  int64_t total = 0;
  switch (kind) {
    case StateKind::kWeights:
      for (const Impl::Layer& layer : impl_->layers) {
        if (layer.weight.defined()) total += layer.weight.nbytes();
        if (layer.has_norm) {
          total += layer.gamma.nbytes() + layer.beta.nbytes() +
                   layer.running_mean.nbytes() + layer.running_var.nbytes();
        }
      }
      break;
    case StateKind::kWeightGrads:
      for (const auto& group : impl_->adam->param_groups()) {
        for (const at::Tensor& p : group.params()) {
          // zero_grad() keeps the buffers allocated: they are held state.
          if (p.grad().defined()) total += p.grad().nbytes();
        }
      }
      break;
    case StateKind::kOptimizer:
      for (const auto& entry : impl_->adam->state()) {
        const auto& state =
            static_cast<const torch::optim::AdamParamState&>(*entry.second);
        total += state.exp_avg().nbytes() + state.exp_avg_sq().nbytes();
      }
      break;
  }
  return total;
}

int64_t StandardNet::ParameterCount() const {
  int64_t total = 0;
  for (const Impl::Layer& layer : impl_->layers) {
    if (layer.weight.defined()) total += layer.weight.numel();
    if (layer.has_norm) total += layer.gamma.numel() + layer.beta.numel();
  }
  return total;
}

}  // namespace fedge
