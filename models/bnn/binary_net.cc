#include "models/bnn/binary_net.h"

#include <ATen/ATen.h>

#include <cmath>

#include "models/bnn/bit_tensor.h"
#include "models/bnn/torch_parallel.h"
#include "models/kernels/binary_conv.h"

namespace fedge {
namespace {

constexpr double kBeta1 = 0.9;
constexpr double kBeta2 = 0.999;
constexpr double kAdamEps = 1e-8;

// Adam moments kept in a compact dtype; updates are computed in float32 one
// tensor at a time.
struct AdamState {
  at::Tensor m, v;

  void Init(const at::Tensor& like, at::ScalarType dtype) {
    m = at::zeros(like.sizes(), at::TensorOptions().dtype(dtype));
    v = at::zeros(like.sizes(), at::TensorOptions().dtype(dtype));
  }

  int64_t bytes() const { return m.nbytes() + v.nbytes(); }

  // param -= lr * mhat / (sqrt(vhat) + eps), optionally clipped to [-1, 1]
  // (latent binary weights).
  void Update(at::Tensor& param, const at::Tensor& grad, int64_t step,
              double lr, bool clip) {
    at::Tensor m32 = m.to(at::kFloat).mul_(kBeta1).add_(grad, 1 - kBeta1);
    at::Tensor v32 =
        v.to(at::kFloat).mul_(kBeta2).addcmul_(grad, grad, 1 - kBeta2);
    const double c1 = 1 - std::pow(kBeta1, step);
    const double c2 = 1 - std::pow(kBeta2, step);
    at::Tensor p32 = param.to(at::kFloat);
    p32.addcdiv_(m32, v32.div(c2).sqrt_().add_(kAdamEps), -lr / c1);
    if (clip) p32.clamp_(-1, 1);
    param.copy_(p32);
    m.copy_(m32);
    v.copy_(v32);
  }
};

at::Tensor UniformInit(at::IntArrayRef shape, double bound, at::ScalarType dtype,
                       at::Generator& gen) {
  return at::empty(shape, at::TensorOptions().dtype(at::kFloat))
      .uniform_(-bound, bound, gen)
      .to(dtype);
}

}  // namespace

// One entry of the architecture, plus the l1 batch norm that follows it
// (unless a pool comes next, which then carries it).
struct MemorySavingNet::Layer {
  LayerSpec spec;
  LayerHooks hooks;
  ConvConfig config;
  at::Tensor weight;  // [n, m, k, k] or [n, m]; empty for pools
  SignGrad sign_grad;
  AdamState weight_adam;

  bool has_norm = false;
  LayerHooks norm_hooks;
  at::Tensor beta, running_mean, running_sigma;
  AdamState beta_adam;
};

MemorySavingNet::MemorySavingNet(const ArchSpec& arch,
                                 const MemorySavingOptions& options,
                                 MemoryLedger* ledger)
    : options_(options) {
  at::Generator gen = at::detail::createCPUGenerator(options.seed);
  const at::ScalarType weight_dtype =
      options.half_latent_weights ? at::kHalf : at::kFloat;
  const at::ScalarType state_dtype =
      options.half_optimizer_state ? at::kBFloat16 : at::kFloat;
  const int first = arch.first_weight_layer();
  int last = first;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    if (arch.layers[i].has_weights) last = static_cast<int>(i);
  }
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    auto layer = std::make_unique<Layer>();
    const LayerSpec& spec = arch.layers[i];
    layer->spec = spec;
    layer->hooks.name = spec.name;
    layer->hooks.ledger = ledger;
    layer->hooks.grad_x = options.grad_x;
    if (spec.has_weights) {
      if (options.act_bits > 1) {
        layer->config = SymmetricInput(
            options.act_bits, options.act_range / ((1 << (options.act_bits - 1)) - 1));
      }
      layer->config.padding = spec.padding;
      layer->config.bit_kernels = options.bit_kernels;
      layer->config.real_input = static_cast<int>(i) == first;
      std::vector<int64_t> shape = {spec.out_channels, spec.in_channels};
      if (spec.kind == LayerKind::kConv) {
        shape.push_back(spec.kernel);
        shape.push_back(spec.kernel);
      }
      const int64_t fan_in = spec.weight_count() / spec.out_channels;
      const int64_t fan_out = spec.weight_count() / spec.in_channels;
      layer->weight = UniformInit(
          shape, std::sqrt(6.0 / static_cast<double>(fan_in + fan_out)),
          weight_dtype, gen);
      layer->weight.set_requires_grad(true);
      layer->weight_adam.Init(layer->weight, state_dtype);
      const bool edge = static_cast<int>(i) == first || static_cast<int>(i) == last;
      if (options.sign_weight_grads && (options.sign_edge_weight_grads || !edge)) {
        layer->hooks.sign_grad = &layer->sign_grad;
      }
    }
    const bool pool_next = i + 1 < arch.layers.size() &&
                           arch.layers[i + 1].kind == LayerKind::kMaxPool;
    if (!pool_next) {
      layer->has_norm = true;
      layer->norm_hooks = layer->hooks;
      layer->norm_hooks.name = spec.name + ".bn";
      layer->norm_hooks.sign_grad = nullptr;
      const auto f32 = at::TensorOptions().dtype(at::kFloat);
      layer->beta = at::zeros({spec.out_channels}, f32).set_requires_grad(true);
      layer->running_mean = at::zeros({spec.out_channels}, f32);
      layer->running_sigma = at::ones({spec.out_channels}, f32);
      layer->beta_adam.Init(layer->beta, at::kFloat);
    }
    layers_.push_back(std::move(layer));
  }
}

MemorySavingNet::~MemorySavingNet() = default;

at::Tensor MemorySavingNet::Forward(const at::Tensor& x, bool training) {
  at::Tensor h = x;
  bool pooled = false;  // the previous convolution ran this pool fused
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& layer = layers_[i];
    switch (layer->spec.kind) {
      case LayerKind::kMaxPool:
        if (!pooled) h = PackedMaxPool2x2(h, layer->hooks);
        pooled = false;
        break;
      case LayerKind::kLinear:
        if (h.dim() != 2) h = h.flatten(1);
        h = PackedConv(h, layer->weight, layer->config, layer->hooks);
        break;
      case LayerKind::kConv: {
        const bool pool_next = i + 1 < layers_.size() &&
                               layers_[i + 1]->spec.kind == LayerKind::kMaxPool;
        if (pool_next && UsesBitKernels(layer->config)) {
          h = PackedConvPool(h, layer->weight, layer->config, layer->hooks,
                             layers_[i + 1]->hooks);
          pooled = true;
        } else {
          h = PackedConv(h, layer->weight, layer->config, layer->hooks);
        }
        break;
      }
    }
    if (layer->has_norm) {
      h = L1BatchNorm(h, layer->beta, layer->running_mean,
                      layer->running_sigma, training, options_.bn_momentum,
                      layer->norm_hooks);
    }
  }
  return h;
}

void MemorySavingNet::Step() {
  at::NoGradGuard no_grad;
  ++step_;
  const double lr = options_.learning_rate;
  for (const auto& layer : layers_) {
    if (layer->weight.defined()) {
      // Float16 weights with bfloat16 moments (the default): one fused pass
      // over raw storage, straight from the 1-bit gradient when there is one.
      const bool fused = layer->weight.scalar_type() == at::kHalf &&
                         layer->weight_adam.m.scalar_type() == at::kBFloat16;
      at::Tensor grad;
      const uint8_t* sign_bits = nullptr;
      float sign_scale = 0;
      if (layer->sign_grad.ready) {
        if (fused) {
          sign_bits = layer->sign_grad.bits.data_ptr<uint8_t>();
          sign_scale = layer->sign_grad.scale;
        } else {
          grad = UnpackSigns(layer->sign_grad.bits, layer->weight.sizes())
                     .mul_(layer->sign_grad.scale);
        }
        layer->sign_grad.ready = false;
      } else if (layer->weight.grad().defined()) {
        grad = layer->weight.grad().to(at::kFloat).contiguous();
      }
      if (fused && (sign_bits != nullptr || grad.defined())) {
        AdamStep adam;
        adam.lr = static_cast<float>(lr);
        adam.beta1 = static_cast<float>(kBeta1);
        adam.beta2 = static_cast<float>(kBeta2);
        adam.eps = static_cast<float>(kAdamEps);
        adam.step = step_;
        adam.clip = true;
        AdamUpdate16(reinterpret_cast<uint16_t*>(layer->weight.data_ptr<at::Half>()),
                     reinterpret_cast<uint16_t*>(layer->weight_adam.m.data_ptr<at::BFloat16>()),
                     reinterpret_cast<uint16_t*>(layer->weight_adam.v.data_ptr<at::BFloat16>()),
                     grad.defined() ? grad.data_ptr<float>() : nullptr, sign_bits, sign_scale,
                     layer->weight.numel(), adam, TorchParallel());
      } else if (grad.defined()) {
        layer->weight_adam.Update(layer->weight, grad, step_, lr, /*clip=*/true);
      }
      // After the update: for float32 weights `grad` aliases the .grad buffer.
      if (layer->weight.grad().defined()) layer->weight.mutable_grad().zero_();
    }
    if (layer->has_norm && layer->beta.grad().defined()) {
      layer->beta_adam.Update(layer->beta, layer->beta.grad(), step_, lr,
                              /*clip=*/false);
      layer->beta.mutable_grad().zero_();
    }
  }
}

int64_t MemorySavingNet::StateBytes(StateKind kind) const {
  int64_t total = 0;
  for (const auto& layer : layers_) {
    switch (kind) {
      case StateKind::kWeights:
        if (layer->weight.defined()) total += layer->weight.nbytes();
        if (layer->has_norm) {
          total += layer->beta.nbytes() + layer->running_mean.nbytes() +
                   layer->running_sigma.nbytes();
        }
        break;
      case StateKind::kWeightGrads:
        if (layer->sign_grad.bits.defined()) {
          total += layer->sign_grad.bits.nbytes() + sizeof(float);
        }
        if (layer->weight.defined() && layer->weight.grad().defined()) {
          total += layer->weight.grad().nbytes();
        }
        if (layer->has_norm && layer->beta.grad().defined()) {
          total += layer->beta.grad().nbytes();
        }
        break;
      case StateKind::kOptimizer:
        if (layer->weight.defined()) total += layer->weight_adam.bytes();
        if (layer->has_norm) total += layer->beta_adam.bytes();
        break;
    }
  }
  return total;
}

std::vector<NamedTensor> MemorySavingNet::Named() {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = *layers_[i];
    const std::pair<const char*, at::Tensor*> fields[] = {{"weight", &l.weight},
                                                          {"beta", &l.beta},
                                                          {"running_mean", &l.running_mean},
                                                          {"running_sigma", &l.running_sigma}};
    for (const auto& [field, tensor] : fields) {
      if (tensor->defined()) out.push_back({l.spec.name + "." + field, static_cast<int>(i), tensor});
    }
  }
  return out;
}

void MemorySavingNet::FreezeBefore(int layer) {
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i) {
    Layer& l = *layers_[i];
    for (at::Tensor* t : {&l.weight, &l.beta}) {
      if (t->defined()) t->set_requires_grad(i >= layer);
    }
  }
}

void MemorySavingNet::SetNormStatistics(const at::Tensor& batch) {
  const double momentum = options_.bn_momentum;
  options_.bn_momentum = 1.0;
  // Only the recording path updates running statistics: every layer
  // trains for this one pass, which is then dropped without a backward.
  std::vector<bool> trainable;
  for (const auto& layer : layers_) {
    trainable.push_back(!layer->beta.defined() || layer->beta.requires_grad());
    if (layer->beta.defined()) layer->beta.set_requires_grad(true);
  }
  (void)Forward(batch, /*training=*/true);
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (layers_[i]->beta.defined()) layers_[i]->beta.set_requires_grad(trainable[i]);
  }
  options_.bn_momentum = momentum;
}

void MemorySavingNet::ResetOptimizer() {
  at::NoGradGuard no_grad;
  step_ = 0;
  for (const auto& layer : layers_) {
    for (AdamState* adam : {&layer->weight_adam, &layer->beta_adam}) {
      if (adam->m.defined()) {
        adam->m.zero_();
        adam->v.zero_();
      }
    }
    layer->sign_grad.ready = false;
    for (at::Tensor* t : {&layer->weight, &layer->beta}) {
      if (t->defined() && t->grad().defined()) t->mutable_grad().zero_();
    }
  }
}

int64_t MemorySavingNet::ParameterCount() const {
  int64_t total = 0;
  for (const auto& layer : layers_) {
    if (layer->weight.defined()) total += layer->weight.numel();
    if (layer->has_norm) total += layer->beta.numel();
  }
  return total;
}

}  // namespace fedge
