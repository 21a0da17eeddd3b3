#include "models/binary_ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "models/bit_tensor.h"

namespace fedge {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::Function;
using torch::autograd::variable_list;

const LayerHooks* HooksOf(AutogradContext* ctx) {
  return reinterpret_cast<const LayerHooks*>(ctx->saved_data["hooks"].toInt());
}

void SaveHooks(AutogradContext* ctx, const LayerHooks& hooks) {
  ctx->saved_data["hooks"] = reinterpret_cast<int64_t>(&hooks);
}

int64_t SavedBytes(const std::vector<at::Tensor>& tensors) {
  int64_t total = 0;
  for (const at::Tensor& t : tensors) total += t.nbytes();
  return total;
}

void Hold(AutogradContext* ctx, const LayerHooks& hooks, int64_t bytes) {
  ctx->saved_data["ledger_bytes"] = bytes;
  if (hooks.ledger != nullptr) hooks.ledger->Hold(hooks.name, bytes);
}

void Release(AutogradContext* ctx, const LayerHooks& hooks) {
  if (hooks.ledger != nullptr) {
    hooks.ledger->Release(hooks.name, ctx->saved_data["ledger_bytes"].toInt());
  }
}

// Latent weights (float32 or float16) -> float32 +1/-1.
at::Tensor BinarizeWeights(const at::Tensor& w) {
  return SignOf(w.scalar_type() == at::kFloat ? w : w.to(at::kFloat));
}

int SymmetricLevels(int bits) { return (1 << (bits - 1)) - 1; }

// The quantized input the layer computes with, from x (forward).
at::Tensor QuantizedInput(const at::Tensor& x, const ConvConfig& config) {
  if (config.real_input) return x;
  if (config.act_bits == 1) return SignOf(x);
  return QuantizeSymmetric(x, config.act_bits, config.act_step);
}

at::Tensor Compute(const at::Tensor& in, const at::Tensor& wb, int padding) {
  if (in.dim() == 2) return at::linear(in, wb);
  return at::conv2d(in, wb, {}, {1, 1}, {padding, padding});
}

// Binary weights, packed quantized input. Inputs: x, w (tensors), config
// and hooks (not differentiable).
struct PackedConvFn : public Function<PackedConvFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const ConvConfig* config,
                            const LayerHooks* hooks) {
    const at::Tensor in = QuantizedInput(x, *config);
    const at::Tensor y = Compute(in, BinarizeWeights(w), config->padding);
    std::vector<at::Tensor> saved;
    if (config->real_input) {
      saved = {x};
    } else if (config->act_bits == 1) {
      saved = {PackSignsOf(x), PackAbsLeqOf(x, 1.0f)};
    } else {
      const int q = SymmetricLevels(config->act_bits);
      const at::Tensor codes =
          (in / config->act_step).round().add(q).to(at::kByte);
      saved = {PackCodes(codes, config->act_bits),
               PackAbsLeqOf(x, q * config->act_step)};
    }
    Hold(ctx, *hooks, SavedBytes(saved));
    saved.push_back(w);  // the parameter itself: no extra bytes
    ctx->save_for_backward(saved);
    ctx->saved_data["shape"] = x.sizes().vec();
    ctx->saved_data["padding"] = static_cast<int64_t>(config->padding);
    ctx->saved_data["real_input"] = config->real_input;
    ctx->saved_data["act_bits"] = static_cast<int64_t>(config->act_bits);
    ctx->saved_data["act_step"] = static_cast<double>(config->act_step);
    SaveHooks(ctx, *hooks);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerHooks& hooks = *HooksOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const int64_t padding = ctx->saved_data["padding"].toInt();
    const bool real_input = ctx->saved_data["real_input"].toBool();
    const int act_bits = static_cast<int>(ctx->saved_data["act_bits"].toInt());
    const at::Tensor& w = saved.back();
    const at::Tensor dy = grads[0].contiguous();

    at::Tensor in;
    if (real_input) {
      in = saved[0];
    } else if (act_bits == 1) {
      in = UnpackSigns(saved[0], shape);
    } else {
      const double step = ctx->saved_data["act_step"].toDouble();
      in = UnpackCodes(saved[0], act_bits, shape)
               .to(at::kFloat)
               .sub_(SymmetricLevels(act_bits))
               .mul_(step);
    }
    const at::Tensor wb = BinarizeWeights(w);
    const bool need_dx = ctx->needs_input_grad(0) && !real_input;
    at::Tensor dx, dw;
    if (in.dim() == 2) {
      if (need_dx) dx = dy.mm(wb);
      dw = dy.t().mm(in);
    } else {
      std::tie(dx, dw, std::ignore) = at::convolution_backward(
          dy, in, wb, c10::nullopt, {1, 1}, {padding, padding}, {1, 1},
          /*transposed=*/false, {0, 0}, /*groups=*/1,
          {need_dx, true, false});
    }
    in.reset();
    if (need_dx) {
      dx = dx.contiguous();
      ApplyPackedMask(saved[1], dx);
      dx = RoundGradX(dx, hooks.grad_x);
    }
    Release(ctx, hooks);
    if (hooks.sign_grad != nullptr) {
      hooks.sign_grad->scale = dw.abs().mean().item<float>();
      hooks.sign_grad->bits = PackSignsOf(dw.contiguous());
      hooks.sign_grad->ready = true;
      dw = at::Tensor();
    } else if (w.scalar_type() != at::kFloat) {
      dw = dw.to(w.scalar_type());
    }
    return {dx, dw, at::Tensor(), at::Tensor()};
  }
};

std::vector<int64_t> ReduceDims(const at::Tensor& x) {
  return x.dim() == 2 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 2, 3};
}

// Reshapes a per-channel vector to broadcast against x.
at::Tensor PerChannel(const at::Tensor& v, const at::Tensor& x) {
  return x.dim() == 2 ? v.view({1, -1}) : v.view({1, -1, 1, 1});
}

constexpr double kBnEps = 1e-5;

struct L1BatchNormFn : public Function<L1BatchNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& beta, at::Tensor* running_mean,
                            at::Tensor* running_sigma, double momentum,
                            const LayerHooks* hooks) {
    const std::vector<int64_t> dims = ReduceDims(x);
    const at::Tensor mu = x.mean(dims);
    at::Tensor xhat = x - PerChannel(mu, x);
    const at::Tensor sigma = xhat.abs().mean(dims).add_(kBnEps);
    xhat.div_(PerChannel(sigma, x));
    const at::Tensor mean_abs = xhat.abs().mean(dims);
    running_mean->mul_(1 - momentum).add_(mu, momentum);
    running_sigma->mul_(1 - momentum).add_(sigma, momentum);

    std::vector<at::Tensor> saved = {PackSignsOf(xhat), sigma.to(at::kHalf),
                                     mean_abs.to(at::kHalf)};
    Hold(ctx, *hooks, SavedBytes(saved));
    ctx->save_for_backward(saved);
    ctx->saved_data["shape"] = x.sizes().vec();
    SaveHooks(ctx, *hooks);
    return xhat.add_(PerChannel(beta, x));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerHooks& hooks = *HooksOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const at::Tensor dy = grads[0].contiguous();
    const std::vector<int64_t> dims = ReduceDims(dy);
    const at::Tensor s = UnpackSigns(saved[0], shape);
    const at::Tensor sigma = PerChannel(saved[1].to(at::kFloat), dy);
    const at::Tensor mean_abs = PerChannel(saved[2].to(at::kFloat), dy);
    // dx = dy/sigma - mean(dy/sigma) - sign(xhat) * mean(dy/sigma * sign(xhat)
    //      * mean|xhat|), means per channel.
    at::Tensor g = dy / sigma;
    const at::Tensor g_mean = g.mean(dims, /*keepdim=*/true);
    const at::Tensor corr = (g * s).mean(dims, /*keepdim=*/true).mul_(mean_abs);
    at::Tensor dx = g.sub_(g_mean).sub_(s * corr);
    const at::Tensor dbeta = dy.sum(dims);
    Release(ctx, hooks);
    return {RoundGradX(dx, hooks.grad_x), dbeta, at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

struct MaxPool2x2Fn : public Function<MaxPool2x2Fn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const LayerHooks* hooks) {
    at::Tensor y, index;
    std::tie(y, index) = at::max_pool2d_with_indices(x, {2, 2}, {2, 2});
    const int64_t width = x.size(3);
    // Flat index h * W + w -> position (h % 2) * 2 + (w % 2) in its window.
    const at::Tensor position =
        index.div(width, "floor").remainder(2).mul_(2).add_(
            index.remainder(width).remainder(2));
    std::vector<at::Tensor> saved = {PackCodes(position.to(at::kByte), 2)};
    Hold(ctx, *hooks, SavedBytes(saved));
    ctx->save_for_backward(saved);
    ctx->saved_data["shape"] = x.sizes().vec();
    ctx->saved_data["out_shape"] = y.sizes().vec();
    SaveHooks(ctx, *hooks);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerHooks& hooks = *HooksOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const std::vector<int64_t> out_shape =
        ctx->saved_data["out_shape"].toIntVector();
    const int64_t n = shape[0], c = shape[1], width = shape[3];
    const int64_t oh = out_shape[2], ow = out_shape[3];
    const at::Tensor position =
        UnpackCodes(saved[0], 2, out_shape).to(at::kLong);
    const auto long_options = at::TensorOptions().dtype(at::kLong);
    const at::Tensor rows = at::arange(oh, long_options).mul_(2).view({oh, 1});
    const at::Tensor cols = at::arange(ow, long_options).mul_(2).view({1, ow});
    const at::Tensor index =
        (rows + position.div(2, "floor")).mul_(width).add_(cols).add_(
            position.remainder(2));
    at::Tensor dx = at::zeros({n, c, shape[2] * width}, grads[0].options());
    dx.scatter_(2, index.view({n, c, -1}), grads[0].contiguous().view({n, c, -1}));
    Release(ctx, hooks);
    return {dx.view(shape), at::Tensor()};
  }
};

bool Recording(std::initializer_list<const at::Tensor*> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor* t : inputs) {
    if (t->requires_grad()) return true;
  }
  return false;
}

}  // namespace

at::Tensor SignOf(const at::Tensor& x) {
  return at::where(x >= 0, at::ones({}, x.options()),
                   at::full({}, -1.0, x.options()));
}

at::Tensor QuantizeSymmetric(const at::Tensor& x, int bits, float step) {
  TORCH_CHECK(bits >= 2 && bits <= 8, "activation bits ", bits,
              " outside [2, 8]");
  TORCH_CHECK(step > 0 && std::isfinite(step), "activation step must be > 0");
  const int q = SymmetricLevels(bits);
  return (x / step).round_().clamp_(-q, q).mul_(step);
}

at::Tensor RoundGradX(const at::Tensor& g, GradXPrecision precision) {
  switch (precision) {
    case GradXPrecision::kFloat32:
      return g;
    case GradXPrecision::kFloat16:
      return g.to(at::kHalf).to(at::kFloat);
    case GradXPrecision::kPow2: {
      const float max_abs = g.abs().max().item<float>();
      if (!(max_abs > 0)) return g;
      // 4 exponent bits: 15 powers of two below the top one, and zero.
      const double top = std::ceil(std::log2(max_abs));
      const at::Tensor e = g.abs().log2_().round_();
      const at::Tensor keep = e >= (top - 14);
      return at::where(keep, SignOf(g) * at::exp2(e.clamp_max(top)),
                       at::zeros({}, g.options()));
    }
  }
  return g;
}

at::Tensor PackedConv(const at::Tensor& x, const at::Tensor& w,
                      const ConvConfig& config, const LayerHooks& hooks) {
  TORCH_CHECK(config.real_input || config.act_bits == 1 ||
                  (config.act_bits >= 2 && config.act_bits <= 8),
              hooks.name, ": activation bits ", config.act_bits,
              " outside [1, 8]");
  if (!Recording({&x, &w})) {
    return Compute(QuantizedInput(x, config), BinarizeWeights(w),
                   config.padding);
  }
  return PackedConvFn::apply(x, w, &config, &hooks);
}

at::Tensor L1BatchNorm(const at::Tensor& x, const at::Tensor& beta,
                       at::Tensor& running_mean, at::Tensor& running_sigma,
                       bool training, double momentum,
                       const LayerHooks& hooks) {
  if (!training) {
    return (x - PerChannel(running_mean, x)) / PerChannel(running_sigma, x) +
           PerChannel(beta, x);
  }
  if (!Recording({&x, &beta})) {
    at::NoGradGuard no_grad;
    const std::vector<int64_t> dims = ReduceDims(x);
    const at::Tensor centered = x - PerChannel(x.mean(dims), x);
    const at::Tensor sigma = centered.abs().mean(dims).add_(kBnEps);
    return centered / PerChannel(sigma, x) + PerChannel(beta, x);
  }
  return L1BatchNormFn::apply(x, beta, &running_mean, &running_sigma, momentum,
                              &hooks);
}

at::Tensor PackedMaxPool2x2(const at::Tensor& x, const LayerHooks& hooks) {
  TORCH_CHECK(x.dim() == 4, hooks.name, ": max pool needs a 4-D input");
  if (!Recording({&x})) return at::max_pool2d(x, {2, 2}, {2, 2});
  return MaxPool2x2Fn::apply(x, &hooks);
}

}  // namespace fedge
