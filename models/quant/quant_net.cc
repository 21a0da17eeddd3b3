#include "models/quant/quant_net.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "models/bnn/binary_ops.h"

namespace fedge {

struct QuantNet::Layer {
  QuantLayerSpec spec;
  const QuantizerConfig* act_config = nullptr;
  at::Tensor weight, bias;            // bias only on the last layer
  at::Tensor w_step, w_range;         // [slices]
  at::Tensor a_step, a_range;         // [1]
  bool has_norm = false;
  at::Tensor gamma, beta, running_mean, running_var;
  // The packed path's configuration, refreshed at each forward; the autograd
  // graph points at it until backward.
  ConvConfig config;
  LayerHooks hooks;
};

QuantNet::QuantNet(const QuantArch& arch, const QuantNetOptions& options,
                   MemoryLedger* ledger)
    : arch_(arch), options_(options) {
  at::Generator gen = at::detail::createCPUGenerator(options.seed);
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    auto layer = std::make_unique<Layer>();
    layer->spec = arch.layers[i];
    const QuantLayerSpec& s = layer->spec;
    layer->act_config = i == 0 ? &options_.input_config : &options_.hidden_config;
    layer->hooks.name = s.name;
    layer->hooks.ledger = ledger;
    std::vector<int64_t> shape;
    int64_t fan_in = 0;
    switch (s.kind) {
      case QuantLayerKind::kConv:
        shape = {s.out_channels, s.in_channels, s.kernel, s.kernel};
        fan_in = int64_t{s.in_channels} * s.kernel * s.kernel;
        break;
      case QuantLayerKind::kDepthwise:
        shape = {s.out_channels, 1, s.kernel, s.kernel};
        fan_in = int64_t{s.kernel} * s.kernel;
        break;
      case QuantLayerKind::kLinear:
        shape = {s.out_channels, s.in_channels};
        fan_in = s.in_channels;
        break;
    }
    // He initialisation for ReLU networks.
    layer->weight = (at::randn(shape, gen, f32) * std::sqrt(2.0 / fan_in)).set_requires_grad(true);
    layer->w_step = at::full({s.slices()}, 0.01, f32);
    layer->w_range = at::full({s.slices()}, 1.0, f32);
    layer->a_step = at::full({1}, 0.01, f32);
    layer->a_range = at::full({1}, 1.0, f32);
    if (i + 1 < arch.layers.size()) {
      layer->has_norm = true;
      layer->gamma = at::ones({s.out_channels}, f32).set_requires_grad(true);
      layer->beta = at::zeros({s.out_channels}, f32).set_requires_grad(true);
      layer->running_mean = at::zeros({s.out_channels}, f32);
      layer->running_var = at::ones({s.out_channels}, f32);
    } else {
      layer->bias = at::zeros({s.out_channels}, f32).set_requires_grad(true);
    }
    layers_.push_back(std::move(layer));
  }
}

QuantNet::~QuantNet() = default;

at::Tensor QuantNet::Forward(const at::Tensor& x, bool training) {
  at::Tensor h = x;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = *layers_[i];
    const QuantLayerSpec& s = l.spec;
    if (s.kind == QuantLayerKind::kLinear && h.dim() != 2) h = h.flatten(1);
    const at::Tensor w = options_.quantize
                             ? Quantize(l.weight, l.w_step, l.w_range, options_.weight_config)
                             : l.weight;
    const int64_t groups = s.groups;
    if (!options_.quantize) {
      h = s.kind == QuantLayerKind::kLinear
              ? at::linear(h, w, l.bias.defined() ? l.bias : at::Tensor())
              : at::conv2d(h, w, {}, {s.stride, s.stride}, {s.padding, s.padding}, {1, 1}, groups);
    } else if (training && at::GradMode::is_enabled() && !l.a_step.requires_grad()) {
      l.config = LearnedInput(l.a_step.item<float>(), l.a_range.item<float>(),
                              l.act_config->is_signed);
      l.config.binary_weights = false;
      l.config.padding = s.padding;
      l.config.stride = s.stride;
      l.config.groups = static_cast<int>(groups);
      h = PackedConv(h, w, l.config, l.hooks);
      if (l.bias.defined()) h = h + l.bias;
    } else {
      const at::Tensor a = Quantize(h, l.a_step, l.a_range, *l.act_config);
      if (s.kind == QuantLayerKind::kLinear) {
        h = at::linear(a, w, l.bias.defined() ? l.bias : at::Tensor());
      } else {
        h = at::conv2d(a, w, {}, {s.stride, s.stride}, {s.padding, s.padding}, {1, 1}, groups);
      }
    }
    if (l.has_norm) {
      h = at::batch_norm(h, l.gamma, l.beta, l.running_mean, l.running_var, training,
                         options_.bn_momentum, 1e-5, false);
      h = at::relu(h);
      if (s.pool_after) h = at::max_pool2d(h, {2, 2}, {2, 2});
    }
  }
  return h;
}

void QuantNet::Calibrate(const at::Tensor& batch, int bits) {
  at::NoGradGuard no_grad;
  // Calibrate layer by layer: each activation quantizer sees its input as
  // produced by the already calibrated layers before it.
  for (auto& layer : layers_) {
    at::Tensor d, xmax;
    InitWeightQuantizer(layer->weight, layer->spec.slices() > 1, bits,
                        options_.weight_config, &d, &xmax);
    layer->w_step.copy_(d);
    layer->w_range.copy_(xmax);
  }
  at::Tensor h = batch;
  for (auto& layer : layers_) {
    if (layer->spec.kind == QuantLayerKind::kLinear && h.dim() != 2) h = h.flatten(1);
    at::Tensor d, xmax;
    InitActivationQuantizer(h, bits, *layer->act_config, &d, &xmax);
    layer->a_step.copy_(d);
    layer->a_range.copy_(xmax);
    const Layer& l = *layer;
    const at::Tensor a = Quantize(h, l.a_step, l.a_range, *l.act_config);
    const at::Tensor w = Quantize(l.weight, l.w_step, l.w_range, options_.weight_config);
    const QuantLayerSpec& s = l.spec;
    if (s.kind == QuantLayerKind::kLinear) {
      h = at::linear(a, w, l.bias.defined() ? l.bias : at::Tensor());
    } else {
      h = at::conv2d(a, w, {}, {s.stride, s.stride}, {s.padding, s.padding}, {1, 1},
                     s.groups);
    }
    if (l.has_norm) {
      h = at::relu(at::batch_norm(h, l.gamma, l.beta, {}, {}, true, 0.0, 1e-5, false));
      if (s.pool_after) h = at::max_pool2d(h, {2, 2}, {2, 2});
    }
  }
}

std::vector<NamedTensor> QuantNet::Named() {
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    Layer& l = *layers_[i];
    const std::pair<const char*, at::Tensor*> fields[] = {
        {"weight", &l.weight},     {"bias", &l.bias},         {"w_step", &l.w_step},
        {"w_range", &l.w_range},   {"a_step", &l.a_step},     {"a_range", &l.a_range},
        {"gamma", &l.gamma},       {"beta", &l.beta},         {"running_mean", &l.running_mean},
        {"running_var", &l.running_var}};
    for (const auto& [field, tensor] : fields) {
      if (tensor->defined()) {
        out.push_back({l.spec.name + "." + field, static_cast<int>(i), tensor});
      }
    }
  }
  return out;
}

void QuantNet::FreezeBefore(int layer) {
  trainable_from_ = std::max(0, std::min(layer, static_cast<int>(layers_.size())));
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i) {
    const bool trainable = i >= trainable_from_;
    Layer& l = *layers_[i];
    for (at::Tensor* t : {&l.weight, &l.bias, &l.gamma, &l.beta}) {
      if (t->defined()) t->set_requires_grad(trainable);
    }
  }
}

std::vector<at::Tensor> QuantNet::WeightParameters() const {
  std::vector<at::Tensor> params;
  for (const auto& l : layers_) {
    params.push_back(l->weight);
    if (l->has_norm) {
      params.push_back(l->gamma);
      params.push_back(l->beta);
    } else {
      params.push_back(l->bias);
    }
  }
  return params;
}

std::vector<at::Tensor> QuantNet::QuantizerParameters() const {
  std::vector<at::Tensor> params;
  for (const auto& l : layers_) {
    params.insert(params.end(), {l->w_step, l->w_range, l->a_step, l->a_range});
  }
  return params;
}

void QuantNet::SetQuantizersTrainable(bool trainable) {
  for (int i = 0; i < static_cast<int>(layers_.size()); ++i) {
    Layer& l = *layers_[i];
    const bool on = trainable && i >= trainable_from_;
    l.w_step.set_requires_grad(on);
    l.w_range.set_requires_grad(on);
    // The image's quantizer stays where calibration put it under the
    // reference accounting: fixed input, not a learned quantizer.
    const bool input_on = on && arch_.counts_input(i);
    l.a_step.set_requires_grad(input_on);
    l.a_range.set_requires_grad(input_on);
  }
}

void QuantNet::Constrain() {
  for (auto& l : layers_) {
    ConstrainQuantizer(l->w_step, l->w_range, options_.weight_config);
    ConstrainQuantizer(l->a_step, l->a_range, *l->act_config);
  }
}

at::Tensor QuantNet::WeightKb() const {
  at::Tensor total = at::zeros({}, at::kFloat);
  for (const auto& l : layers_) {
    const double per_slice =
        static_cast<double>(l->spec.weight_count()) / l->spec.slices();
    total = total + BitWidths(l->w_step, l->w_range, options_.weight_config).sum() *
                        (per_slice / 8000.0);
  }
  return total + arch_.bias_kb();
}

at::Tensor QuantNet::ActivationKb() const {
  at::Tensor total = at::zeros({}, at::kFloat);
  for (size_t i = 0; i < layers_.size(); ++i) {
    if (!arch_.counts_input(i)) continue;
    const auto& l = layers_[i];
    total = total + BitWidths(l->a_step, l->a_range, *l->act_config).sum() *
                        (static_cast<double>(l->spec.input_elements()) / 8000.0);
  }
  return total;
}

std::vector<LayerBits> QuantNet::Bits() const {
  std::vector<LayerBits> bits;
  for (const auto& l : layers_) {
    LayerBits b;
    b.weight_bits = IntegerBitWidths(l->w_step, l->w_range, options_.weight_config);
    b.activation_bits = IntegerBitWidths(l->a_step, l->a_range, *l->act_config)[0];
    bits.push_back(b);
  }
  return bits;
}

SizeReport QuantNet::Size() const { return *ComputeSize(arch_, Bits()); }

namespace {

// The step that gives `bits` bits over `range`: range / (2^(b-1) - 1) signed,
// range / (2^b - 1) unsigned.
double StepFor(double range, int bits, bool is_signed) {
  const int levels = is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  return range / std::max(1, levels);
}

// A quantizer's step and range at `bits` bits. Its range stays, and the
// step becomes range / levels(bits), capped at d_max with the range then
// narrowed to `bits` bits of that step. A binary weight slice (1 bit) takes
// the scale that fits its weights best, their mean magnitude, and a step
// well above twice it.
struct StepRange {
  double step, range;
};

StepRange AtBits(const QuantizerConfig& config, double range, int bits,
                 const at::Tensor& weights) {
  if (bits == 1 && AllowsBinary(config)) {
    const double scale = std::max(weights.abs().mean().item<double>(), config.xmax_min);
    return {4 * scale, scale};
  }
  const double step = StepFor(range, bits, config.is_signed);
  if (step <= config.d_max) return {step, range};
  return {config.d_max, config.d_max / StepFor(1.0, bits, config.is_signed)};
}

// The mean squared rounding error of weights quantized at (step, range) by
// the forward pass's own quantizer (binary where round(range / step) = 0).
double WeightNoise(const at::Tensor& w, double step, double range, const QuantizerConfig& config) {
  const at::Tensor q = Quantize(w, at::full({1}, step, at::kFloat), at::full({1}, range, at::kFloat),
                                config);
  return (q - w).pow(2).mean().item<double>();
}

}  // namespace

QuantNet::Projection QuantNet::ProjectToBudget(const Budget& budget) {
  at::NoGradGuard no_grad;
  Projection out;
  std::vector<LayerBits> bits = Bits();
  const SizeReport start = *ComputeSize(arch_, bits);
  // One candidate per weight slice or activation quantizer. Noise is
  // relative to the quantizer's range when the projection starts (so layers
  // of different scales compare) and per element: for weights measured on
  // the weights themselves, 12 E[(Q(w) - w)^2] / xmax^2; for activations
  // modelled as uniform rounding noise, 12 (d^2 / 12) / xmax^2.
  struct Candidate {
    int layer;
    int slice;  // -1: the layer's input quantizer
    int64_t elements;
    int64_t layer_elements;  // of the whole weight tensor or input
    double scale;            // 1 / xmax^2 at the start
    at::Tensor weights;
    double noise = 0;
    bool stuck = false;
  };
  auto config_of = [&](const Candidate& c) -> const QuantizerConfig& {
    return c.slice < 0 ? *layers_[c.layer]->act_config : options_.weight_config;
  };
  auto tensors_of = [&](const Candidate& c) -> std::pair<at::Tensor*, at::Tensor*> {
    Layer& l = *layers_[c.layer];
    return c.slice < 0 ? std::make_pair(&l.a_step, &l.a_range)
                       : std::make_pair(&l.w_step, &l.w_range);
  };
  auto noise_at = [&](const Candidate& c, const StepRange& q) {
    if (c.slice < 0) return q.step * q.step * c.scale;
    return 12 * WeightNoise(c.weights, q.step, q.range, options_.weight_config) * c.scale;
  };
  auto fit = [&](bool weights, double budget_kb, double size_kb) {
    if (budget_kb <= 0) return;
    std::vector<Candidate> candidates;
    for (size_t i = 0; i < layers_.size(); ++i) {
      Layer& l = *layers_[i];
      if (weights) {
        const int64_t per_slice = l.spec.weight_count() / l.spec.slices();
        const at::Tensor flat = l.weight.detach().reshape({l.spec.slices(), -1});
        for (int s = 0; s < l.spec.slices(); ++s) {
          const double range = l.w_range[s].item<double>();
          Candidate c{static_cast<int>(i), s, per_slice, l.spec.weight_count(),
                      1 / (range * range), flat[s]};
          c.noise = noise_at(c, {l.w_step[s].item<double>(), range});
          candidates.push_back(std::move(c));
        }
      } else if (arch_.counts_input(i)) {
        const double range = l.a_range.item<double>();
        Candidate c{static_cast<int>(i), -1, l.spec.input_elements(), l.spec.input_elements(),
                    1 / (range * range), {}};
        c.noise = noise_at(c, {l.a_step.item<double>(), range});
        candidates.push_back(std::move(c));
      }
    }
    auto bits_of = [&](const Candidate& c) -> int& {
      return c.slice < 0 ? bits[c.layer].activation_bits : bits[c.layer].weight_bits[c.slice];
    };
    auto planned = [&](const Candidate& c, int target) {
      const at::Tensor& range = *tensors_of(c).second;
      return AtBits(config_of(c), range[std::max(c.slice, 0)].item<double>(), target, c.weights);
    };
    // Sets candidate c to `target` bits; false (and nothing changed) where
    // rounding keeps its bit-width.
    auto apply = [&](Candidate& c, int target) {
      const auto [d, range] = tensors_of(c);
      const int64_t index = std::max(c.slice, 0);
      const StepRange q = planned(c, target);
      const at::Tensor old_step = (*d)[index].clone(), old_range = (*range)[index].clone();
      (*d)[index].fill_(q.step);
      (*range)[index].fill_(q.range);
      const int now = IntegerBitWidths(*d, *range, config_of(c))[index];
      if (now != target) {
        (*d)[index].copy_(old_step);
        (*range)[index].copy_(old_range);
        return false;
      }
      c.noise = noise_at(c, q);
      bits_of(c) = target;
      return true;
    };
    // Sizes are linear in the bits: each cut takes its elements' bits off.
    double excess_bits = (size_kb - budget_kb) * 8000;
    const double tolerance = 1e-9 * budget_kb * 8000;
    if (excess_bits <= tolerance) return;
    while (excess_bits > tolerance) {
      // A cut costs what it adds to its layer's mean relative noise (each
      // layer's output noise relative to its signal). Where one cut covers
      // the excess, the one that costs least (on a tie the smaller);
      // otherwise the least per bit saved (so wide quantizers and large
      // layers give first, and a small tensor is cut before a large one
      // overshoots).
      Candidate* best = nullptr;
      bool best_covers = false;
      double best_cost = 0;
      for (Candidate& c : candidates) {
        if (c.stuck || bits_of(c) <= FloorBits(config_of(c))) continue;
        const double added = std::max(0.0, noise_at(c, planned(c, bits_of(c) - 1)) - c.noise) /
                             static_cast<double>(c.layer_elements);
        const bool covers = c.elements >= excess_bits;
        const double cost = covers ? c.elements * added : added;
        const bool better =
            cost < best_cost || (cost == best_cost && best != nullptr && c.elements < best->elements);
        if (best == nullptr || (covers && !best_covers) || (covers == best_covers && better)) {
          best = &c;
          best_covers = covers;
          best_cost = cost;
        }
      }
      if (best == nullptr) return;  // every quantizer at its floor
      if (!apply(*best, bits_of(*best) - 1)) {
        best->stuck = true;
        continue;
      }
      excess_bits -= static_cast<double>(best->elements);
      ++(weights ? out.weight_cuts : out.activation_cuts);
    }
    // A cut that overshot leaves room: give bits back where one bit removes
    // the most of its layer's relative noise per bit and fits in what is
    // left (never to a binary slice, whose next bit would cost as much as its
    // cut saved).
    double room = -excess_bits;
    for (Candidate& c : candidates) c.stuck = false;
    while (true) {
      Candidate* best = nullptr;
      double best_gain = 0;
      for (Candidate& c : candidates) {
        const QuantizerConfig& config = config_of(c);
        if (c.stuck || c.elements > room || bits_of(c) >= config.max_bits) continue;
        if (bits_of(c) == 1 && AllowsBinary(config)) continue;
        const double gain = (c.noise - noise_at(c, planned(c, bits_of(c) + 1))) /
                            static_cast<double>(c.layer_elements);
        if (gain > best_gain) {
          best = &c;
          best_gain = gain;
        }
      }
      if (best == nullptr) return;
      if (!apply(*best, bits_of(*best) + 1)) {
        best->stuck = true;
        continue;
      }
      room -= static_cast<double>(best->elements);
      ++(weights ? out.weight_refills : out.activation_refills);
    }
  };
  fit(/*weights=*/true, budget.weight_kb, start.weight_kb);
  fit(/*weights=*/false, budget.activation_kb, start.activation_kb);
  out.met = WithinBudget(Size(), budget);
  return out;
}

std::vector<at::Tensor> QuantNet::Snapshot() const {
  std::vector<at::Tensor> out;
  for (const auto& l : layers_) {
    for (const at::Tensor& t : {l->weight, l->bias, l->w_step, l->w_range, l->a_step,
                                l->a_range, l->gamma, l->beta, l->running_mean,
                                l->running_var}) {
      out.push_back(t.defined() ? t.detach().clone() : at::Tensor());
    }
  }
  return out;
}

void QuantNet::Restore(const std::vector<at::Tensor>& snapshot) {
  at::NoGradGuard no_grad;
  size_t k = 0;
  for (auto& l : layers_) {
    for (at::Tensor* t : {&l->weight, &l->bias, &l->w_step, &l->w_range, &l->a_step,
                          &l->a_range, &l->gamma, &l->beta, &l->running_mean,
                          &l->running_var}) {
      if (t->defined()) t->copy_(snapshot[k]);
      ++k;
    }
  }
}

}  // namespace fedge
