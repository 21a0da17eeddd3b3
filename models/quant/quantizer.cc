#include "models/quant/quantizer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace fedge {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

// Reshapes a per-slice parameter to broadcast against x.
at::Tensor Broadcast(const at::Tensor& p, const at::Tensor& x) {
  if (p.numel() == 1) return p.reshape({});
  std::vector<int64_t> shape(x.dim(), 1);
  shape[0] = p.numel();
  return p.reshape(shape);
}

// Sums a per-element tensor over everything but the slice dimension.
at::Tensor SliceSum(const at::Tensor& t, const at::Tensor& like) {
  if (like.numel() == 1) return t.sum().reshape(like.sizes());
  return t.reshape({like.numel(), -1}).sum(1).reshape(like.sizes());
}

at::Tensor Modification(const at::Tensor& frac, const at::Tensor& g,
                        const QuantizerConfig& config) {
  if (config.delta == 0) return at::ones_like(frac);
  at::Tensor shape = frac;
  if (!config.is_weight) {
    shape = (frac * config.alpha).atanh_().mul_(0.5 / std::atanh(config.alpha / 2));
  }
  return 1 + config.delta * g.sign() * shape;
}

// The binary slices' mask, or an undefined tensor where there are none.
at::Tensor AnyBinary(const at::Tensor& d, const at::Tensor& xmax, const QuantizerConfig& config) {
  if (!AllowsBinary(config)) return at::Tensor();
  at::Tensor binary = BinarySlices(d, xmax);
  return binary.any().item<bool>() ? binary : at::Tensor();
}

struct QuantizeFn : public Function<QuantizeFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& d,
                            const at::Tensor& xmax, const QuantizerConfig* config) {
    const at::Tensor db = Broadcast(d, x), xb = Broadcast(xmax, x);
    const at::Tensor lo = config->is_signed ? -xb : at::zeros_like(xb);
    const at::Tensor clipped = at::max(at::min(x, xb), lo);
    ctx->save_for_backward({x, d, xmax});
    ctx->saved_data["config"] = reinterpret_cast<int64_t>(config);
    at::Tensor out = (clipped / db).round_().mul_(db);
    const at::Tensor binary = AnyBinary(d, xmax, *config);
    if (binary.defined()) {
      out = at::where(Broadcast(binary, x), at::where(x >= 0, xb, -xb), out);
    }
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& d = saved[1];
    const at::Tensor& xmax = saved[2];
    const auto& config =
        *reinterpret_cast<const QuantizerConfig*>(ctx->saved_data["config"].toInt());
    const at::Tensor g = grads[0];
    const at::Tensor db = Broadcast(d, x), xb = Broadcast(xmax, x);
    const at::Tensor lo = config.is_signed ? -xb : at::zeros_like(xb);
    const at::Tensor above = x > xb;
    const at::Tensor below = x < lo;
    const at::Tensor inside = ~(above | below);
    const at::Tensor v = at::max(at::min(x, xb), lo) / db;
    const at::Tensor r = v.round();
    at::Tensor gm = g * Modification(v - r, g, config);
    at::Tensor dd_elem = g * r - gm * v;
    at::Tensor dxmax_elem = gm * above.to(g.scalar_type());
    if (config.is_signed) dxmax_elem = dxmax_elem - gm * below.to(g.scalar_type());
    const at::Tensor binary = AnyBinary(d, xmax, config);
    if (binary.defined()) {
      // Sign x scale: straight through inside the range, the scale's
      // gradient from every element, none for the step.
      const at::Tensor bb = Broadcast(binary, x);
      gm = at::where(bb, g, gm);
      dd_elem = at::where(bb, at::zeros_like(dd_elem), dd_elem);
      dxmax_elem = at::where(bb, at::where(x >= 0, g, -g), dxmax_elem);
    }
    const at::Tensor dx = gm * inside;
    // Per-element contributions, each clipped to [-d, d].
    const at::Tensor neg_d = -db;
    dd_elem = at::max(at::min(dd_elem, db), neg_d);
    dxmax_elem = at::max(at::min(dxmax_elem, db), neg_d);
    return {dx, SliceSum(dd_elem, d), SliceSum(dxmax_elem, xmax), at::Tensor()};
  }
};

at::Tensor RoundSte(const at::Tensor& t) { return t + (t.round() - t).detach(); }
at::Tensor CeilSte(const at::Tensor& t) { return t + (t.ceil() - t).detach(); }

}  // namespace

QuantizerConfig WeightQuantizerConfig() { return QuantizerConfig(); }

bool AllowsBinary(const QuantizerConfig& config) {
  return config.is_signed && config.is_weight && config.binary_slices;
}

at::Tensor BinarySlices(const at::Tensor& d, const at::Tensor& xmax) {
  at::NoGradGuard no_grad;
  return (xmax.detach() / d.detach()).round() == 0;
}

int FloorBits(const QuantizerConfig& config) {
  return std::max(config.min_bits, config.is_signed && !AllowsBinary(config) ? 2 : 1);
}

QuantizerConfig ActivationQuantizerConfig(bool is_signed) {
  QuantizerConfig config;
  config.is_signed = is_signed;
  config.is_weight = false;
  config.d_max = 8;
  return config;
}

at::Tensor Quantize(const at::Tensor& x, const at::Tensor& d, const at::Tensor& xmax,
                    const QuantizerConfig& config) {
  return QuantizeFn::apply(x, d, xmax, &config);
}

at::Tensor BitWidths(const at::Tensor& d, const at::Tensor& xmax,
                     const QuantizerConfig& config) {
  const at::Tensor levels = RoundSte(xmax / d);
  at::Tensor bits = CeilSte(at::log2(levels + 1)) + (config.is_signed ? 1 : 0);
  return bits.clamp_min(config.min_bits);
}

std::vector<int> IntegerBitWidths(const at::Tensor& d, const at::Tensor& xmax,
                                  const QuantizerConfig& config) {
  at::NoGradGuard no_grad;
  const at::Tensor bits = BitWidths(d, xmax, config).to(at::kInt).contiguous();
  return std::vector<int>(bits.data_ptr<int>(), bits.data_ptr<int>() + bits.numel());
}

void ConstrainQuantizer(at::Tensor& d, at::Tensor& xmax, const QuantizerConfig& config) {
  at::NoGradGuard no_grad;
  const at::Tensor binary = AnyBinary(d, xmax, config);
  at::Tensor binary_d, binary_xmax;
  if (binary.defined()) {
    // Binary slices keep their scale in range and a step well above twice it.
    binary_xmax = xmax.clamp(config.xmax_min, config.xmax_max);
    binary_d = at::max(d, binary_xmax * 2.5);
  }
  d.clamp_(config.d_min, config.d_max);
  xmax.clamp_(config.xmax_min, config.xmax_max);
  // d < xmax: raise xmax to just above d where needed.
  xmax.copy_(at::max(xmax, d * (1 + 1e-3)));
  // At most max_bits: round(xmax / d) <= the largest level count.
  const int levels = config.is_signed ? (1 << (config.max_bits - 1)) - 1
                                      : (1 << config.max_bits) - 1;
  d.copy_(at::max(d, xmax / (levels + 0.49)));
  if (binary.defined()) {
    xmax.copy_(at::where(binary, binary_xmax, xmax));
    d.copy_(at::where(binary, binary_d, d));
  }
}

void InitWeightQuantizer(const at::Tensor& w, bool per_slice, int bits0,
                         const QuantizerConfig& config, at::Tensor* d, at::Tensor* xmax) {
  at::NoGradGuard no_grad;
  const at::Tensor flat = per_slice ? w.detach().reshape({w.size(0), -1}).to(at::kFloat)
                                    : w.detach().reshape({1, -1}).to(at::kFloat);
  const at::Tensor mu = flat.mean(1);
  const at::Tensor sigma = flat.std(1, /*unbiased=*/false);
  *xmax = at::max((mu - 3 * sigma).abs(), (mu + 3 * sigma).abs());
  const double levels = config.is_signed ? (1 << (bits0 - 1)) - 1 : (1 << bits0) - 1;
  *d = *xmax / levels;
  ConstrainQuantizer(*d, *xmax, config);
}

void InitActivationQuantizer(const at::Tensor& x, int bits0, const QuantizerConfig& config,
                             at::Tensor* d, at::Tensor* xmax) {
  at::NoGradGuard no_grad;
  const at::Tensor flat = x.detach().abs().reshape({-1}).to(at::kFloat);
  const int64_t n = flat.numel();
  const int64_t k = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(0.999 * n)));
  const double p999 = std::get<0>(flat.kthvalue(k)).item<double>();
  *xmax = at::full({1}, std::max(p999, config.xmax_min), at::kFloat);
  const double levels = config.is_signed ? (1 << (bits0 - 1)) - 1 : (1 << bits0) - 1;
  *d = *xmax / levels;
  ConstrainQuantizer(*d, *xmax, config);
}

}  // namespace fedge
