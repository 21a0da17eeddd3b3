#include "models/bnn/binary_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

#include "common/codec/bit_pack.h"
#include "models/kernels/binary_conv.h"
#include "models/kernels/binary_kernels.h"
#include "models/bnn/bit_tensor.h"
#include "models/bnn/torch_parallel.h"

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

// Saves `packed` (what the op keeps, reported to the ledger) plus `refs`
// (tensors held anyway, such as parameters: no extra bytes), the input's
// shape and the hooks.
void SaveForBackward(AutogradContext* ctx, const LayerHooks& hooks,
                     std::vector<at::Tensor> packed, const at::Tensor& input,
                     std::vector<at::Tensor> refs = {}) {
  Hold(ctx, hooks, SavedBytes(packed));
  packed.insert(packed.end(), refs.begin(), refs.end());
  ctx->save_for_backward(packed);
  ctx->saved_data["shape"] = input.sizes().vec();
  SaveHooks(ctx, hooks);
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

at::Tensor InputCodes(const at::Tensor& x, const ConvConfig& config) {
  return (x / config.act_step).round_().clamp_(config.code_min, config.code_max);
}

// The quantized input the layer computes with, from x (forward).
at::Tensor QuantizedInput(const at::Tensor& x, const ConvConfig& config) {
  if (config.real_input) return x;
  if (config.sign_input) return SignOf(x);
  return InputCodes(x, config).mul_(config.act_step);
}

at::Tensor LayerWeights(const at::Tensor& w, bool binary) {
  if (binary) return BinarizeWeights(w);
  return w.scalar_type() == at::kFloat ? w : w.to(at::kFloat);
}

at::Tensor Compute(const at::Tensor& in, const at::Tensor& wb, int64_t padding,
                   int64_t stride, int64_t groups) {
  if (in.dim() == 2) return at::linear(in, wb);
  return at::conv2d(in, wb, {}, {stride, stride}, {padding, padding}, {1, 1}, groups);
}

// A 1-D tensor of 64-bit words (the packed layouts of binary_conv.h).
at::Tensor Words(int64_t count) {
  return at::empty({count}, at::TensorOptions().dtype(at::kLong));
}

uint64_t* WordsOf(const at::Tensor& t) {
  return reinterpret_cast<uint64_t*>(t.data_ptr<int64_t>());
}

// Rounds a contiguous float32 tensor to bfloat16 in place, on all threads.
void RoundToBFloat16InPlace(at::Tensor& g) {
  constexpr int64_t kChunk = 1 << 15;
  float* data = g.data_ptr<float>();
  const int64_t n = g.numel();
  TorchParallel()((n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
    const int64_t begin = c0 * kChunk, end = std::min(n, c1 * kChunk);
    RoundToBFloat16(data + begin, end - begin);
  });
}

// Geometry of a layer for the bit-packed kernels; weights are [out, c, k, k]
// or [out, c].
BinaryConvShape KernelShape(at::IntArrayRef x, at::IntArrayRef w, int64_t padding,
                            int64_t stride) {
  BinaryConvShape shape;
  shape.n = x[0];
  shape.c = x[1];
  shape.out = w[0];
  if (x.size() == 4) {
    shape.h = x[2];
    shape.w = x[3];
    shape.kernel = w[2];
    shape.pad = padding;
    shape.stride = stride;
  }
  return shape;
}

at::Tensor PackedWeightSigns(const at::Tensor& w, const BinaryConvShape& shape) {
  const at::Tensor w32 = w.detach().to(at::kFloat).contiguous();
  at::Tensor packed = Words(shape.weight_words());
  PackWeightSigns(w32.data_ptr<float>(), shape, WordsOf(packed), TorchParallel());
  return packed;
}

// The input's packed signs and straight-through mask (|x| <= 1).
struct PackedInput {
  at::Tensor signs, mask;
};

PackedInput PackInput(const at::Tensor& in, const BinaryConvShape& shape) {
  PackedInput packed{Words(shape.input_words()), Words(shape.mask_words())};
  PackActivationSigns(in.data_ptr<float>(), shape, 1.0f, WordsOf(packed.signs),
                      WordsOf(packed.mask), TorchParallel());
  return packed;
}

void SaveGeometry(AutogradContext* ctx, const ConvConfig& config) {
  ctx->saved_data["padding"] = static_cast<int64_t>(config.padding);
  ctx->saved_data["stride"] = static_cast<int64_t>(config.stride);
}

// The layer's geometry from what forward saved (x's shape, w, SaveGeometry).
BinaryConvShape SavedShape(AutogradContext* ctx, const at::Tensor& w) {
  return KernelShape(ctx->saved_data["shape"].toIntVector(), w.sizes(),
                     ctx->saved_data["padding"].toInt(), ctx->saved_data["stride"].toInt());
}

// dY's int8 codes and their scale; a non-finite gradient is an error.
at::Tensor QuantizeGradient(const at::Tensor& grad, const LayerHooks& hooks, float* scale) {
  const at::Tensor dy = grad.to(at::kFloat).contiguous();
  at::Tensor q = at::empty(dy.sizes(), at::TensorOptions().dtype(at::kChar));
  *scale = QuantizeInt8(dy.data_ptr<float>(), dy.numel(), q.data_ptr<int8_t>(), TorchParallel());
  TORCH_CHECK(*scale >= 0, hooks.name, ": the gradient reaching the layer is not finite");
  return q;
}

// The backward both bit-packed ops share, from dY's int8 codes q (at the
// convolution's output size) and their scale: dX (masked, rounded as the
// hooks say) and dW (or its 1-bit form). Saved: signs, mask, w, ...
variable_list BitConvBackward(AutogradContext* ctx, at::Tensor& q, float scale,
                              const BinaryConvShape& shape) {
  const LayerHooks& hooks = *HooksOf(ctx);
  const variable_list saved = ctx->get_saved_variables();
  const std::vector<int64_t> x_shape = ctx->saved_data["shape"].toIntVector();
  const at::Tensor& w = saved[2];
  const auto f32 = at::TensorOptions().dtype(at::kFloat);
  at::Tensor dx;
  if (ctx->needs_input_grad(0)) {
    dx = at::empty(x_shape, f32);
    const bool bf16 = hooks.grad_x == GradXPrecision::kBFloat16;
    BinaryConvBackwardInput(q.data_ptr<int8_t>(), scale, WordsOf(PackedWeightSigns(w, shape)),
                            WordsOf(saved[1]), shape, dx.data_ptr<float>(), TorchParallel(),
                            /*round_to_bfloat16=*/bf16);
    if (!bf16) dx = RoundGradX(dx, hooks.grad_x);
  }
  at::Tensor dw = at::empty(w.sizes(), f32);
  BinaryConvBackwardWeight(q.data_ptr<int8_t>(), scale, WordsOf(saved[0]), shape,
                           dw.data_ptr<float>(), TorchParallel());
  q.reset();
  Release(ctx, hooks);
  if (hooks.sign_grad != nullptr) {
    hooks.sign_grad->bits = at::empty({static_cast<int64_t>(PackedBytes(dw.numel(), 1))},
                                      at::TensorOptions().dtype(at::kByte));
    hooks.sign_grad->scale = PackSignsAndMeanAbs(dw.data_ptr<float>(), dw.numel(),
                                                 hooks.sign_grad->bits.data_ptr<uint8_t>());
    hooks.sign_grad->ready = true;
    dw = at::Tensor();
  } else if (w.scalar_type() != at::kFloat) {
    dw = dw.to(w.scalar_type());
  }
  return {dx, dw, at::Tensor(), at::Tensor()};
}

// sign(x) * sign(W) entirely on packed bits (binary_conv.h): forward by
// XNOR-popcount, backward by int8 x bit GEMMs. Saves the input's packed
// signs and straight-through mask; sign(W) is packed again in backward
// (weights/32 bytes of work) rather than held.
// The bit-packed convolution's output, and its packed input for backward.
at::Tensor BitConvOutput(const at::Tensor& x, const at::Tensor& w, const ConvConfig& config,
                         PackedInput* packed) {
  const at::Tensor in = x.detach().to(at::kFloat).contiguous();
  const BinaryConvShape shape = KernelShape(in.sizes(), w.sizes(), config.padding, config.stride);
  *packed = PackInput(in, shape);
  std::vector<int64_t> out_shape = {shape.n, shape.out};
  if (in.dim() == 4) {
    out_shape.push_back(shape.out_h());
    out_shape.push_back(shape.out_w());
  }
  at::Tensor y = at::empty(out_shape, at::TensorOptions().dtype(at::kFloat));
  BinaryConvForward(WordsOf(packed->signs), WordsOf(PackedWeightSigns(w, shape)), shape,
                    y.data_ptr<float>(), TorchParallel());
  return y;
}

// The fused convolution and pool's output, its packed input and the pool's
// argmax positions (one byte each).
at::Tensor BitConvPoolOutput(const at::Tensor& x, const at::Tensor& w, const ConvConfig& config,
                             const LayerHooks& hooks, PackedInput* packed, at::Tensor* position) {
  const at::Tensor in = x.detach().to(at::kFloat).contiguous();
  const BinaryConvShape shape = KernelShape(in.sizes(), w.sizes(), config.padding, config.stride);
  TORCH_CHECK(in.dim() == 4 && shape.out_h() >= 2 && shape.out_w() >= 2, hooks.name,
              ": a fused pool needs a convolution output of at least 2x2");
  *packed = PackInput(in, shape);
  const std::vector<int64_t> pooled = {shape.n, shape.out, shape.out_h() / 2, shape.out_w() / 2};
  at::Tensor y = at::empty(pooled, at::TensorOptions().dtype(at::kFloat));
  *position = at::empty(pooled, at::TensorOptions().dtype(at::kByte));
  BinaryConvPoolForward(WordsOf(packed->signs), WordsOf(PackedWeightSigns(w, shape)), shape,
                        y.data_ptr<float>(), position->data_ptr<uint8_t>(), TorchParallel());
  return y;
}

struct BitConvFn : public Function<BitConvFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const ConvConfig* config,
                            const LayerHooks* hooks) {
    PackedInput packed;
    at::Tensor y = BitConvOutput(x, w, *config, &packed);
    SaveForBackward(ctx, *hooks, {packed.signs, packed.mask}, x, {w});
    SaveGeometry(ctx, *config);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const BinaryConvShape shape = SavedShape(ctx, ctx->get_saved_variables()[2]);
    float scale;
    at::Tensor q = QuantizeGradient(grads[0], *HooksOf(ctx), &scale);
    return BitConvBackward(ctx, q, scale, shape);
  }
};

// BitConvFn with the 2x2 max pool that follows it fused in
// (BinaryConvPoolForward): the full-size output is never a tensor. Saves
// the pool's argmax positions at 2 bits, on the pool's own ledger line.
struct BitConvPoolFn : public Function<BitConvPoolFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const ConvConfig* config,
                            const LayerHooks* hooks, const LayerHooks* pool_hooks) {
    PackedInput packed;
    at::Tensor position;
    at::Tensor y = BitConvPoolOutput(x, w, *config, *hooks, &packed, &position);
    const at::Tensor packed_position = PackCodes(position, 2);
    SaveForBackward(ctx, *hooks, {packed.signs, packed.mask}, x, {w, packed_position});
    const int64_t pool_bytes = packed_position.nbytes();
    ctx->saved_data["pool_bytes"] = pool_bytes;
    ctx->saved_data["pool_hooks"] = reinterpret_cast<int64_t>(pool_hooks);
    if (pool_hooks->ledger != nullptr) pool_hooks->ledger->Hold(pool_hooks->name, pool_bytes);
    SaveGeometry(ctx, *config);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const BinaryConvShape shape = SavedShape(ctx, saved[2]);
    const auto* pool_hooks =
        reinterpret_cast<const LayerHooks*>(ctx->saved_data["pool_hooks"].toInt());
    // Quantize the pooled gradient (the full-size one has the same largest
    // magnitude: it is these values and zeros), then scatter the codes.
    float scale;
    const at::Tensor pooled_q = QuantizeGradient(grads[0], *HooksOf(ctx), &scale);
    const at::Tensor position = UnpackCodes(saved[3], 2, pooled_q.sizes());
    at::Tensor q = at::empty({shape.n, shape.out, shape.out_h(), shape.out_w()},
                             at::TensorOptions().dtype(at::kChar));
    ScatterPooledCodes(pooled_q.data_ptr<int8_t>(), position.data_ptr<uint8_t>(), shape,
                       q.data_ptr<int8_t>(), TorchParallel());
    if (pool_hooks->ledger != nullptr) {
      pool_hooks->ledger->Release(pool_hooks->name, ctx->saved_data["pool_bytes"].toInt());
    }
    variable_list grads_out = BitConvBackward(ctx, q, scale, shape);
    grads_out.push_back(at::Tensor());
    return grads_out;
  }
};

// Binary weights, packed quantized input. Inputs: x, w (tensors), config
// and hooks (not differentiable).
struct PackedConvFn : public Function<PackedConvFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, const ConvConfig* config,
                            const LayerHooks* hooks) {
    std::vector<at::Tensor> saved;
    at::Tensor in;
    if (config->real_input) {
      in = x;
      saved = {x};
    } else if (config->sign_input) {
      saved = {PackSignsOf(x), PackAbsLeqOf(x, 1.0f)};
      in = UnpackSigns(saved[0], x.sizes());
    } else {
      const at::Tensor codes = InputCodes(x, *config);
      saved = {PackCodes(codes.sub(config->code_min).to(at::kByte), config->act_bits),
               PackInRangeOf(x, config->clip_lo, config->clip_hi)};
      in = codes.mul_(config->act_step);
    }
    const at::Tensor y = Compute(in, LayerWeights(w, config->binary_weights),
                                 config->padding, config->stride, config->groups);
    SaveForBackward(ctx, *hooks, std::move(saved), x, {w});
    ctx->saved_data["padding"] = static_cast<int64_t>(config->padding);
    ctx->saved_data["stride"] = static_cast<int64_t>(config->stride);
    ctx->saved_data["groups"] = static_cast<int64_t>(config->groups);
    ctx->saved_data["binary_weights"] = config->binary_weights;
    ctx->saved_data["code_min"] = static_cast<int64_t>(config->code_min);
    ctx->saved_data["real_input"] = config->real_input;
    ctx->saved_data["act_bits"] = static_cast<int64_t>(config->act_bits);
    ctx->saved_data["sign_input"] = config->sign_input;
    ctx->saved_data["act_step"] = static_cast<double>(config->act_step);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerHooks& hooks = *HooksOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const int64_t padding = ctx->saved_data["padding"].toInt();
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const bool binary_weights = ctx->saved_data["binary_weights"].toBool();
    const bool real_input = ctx->saved_data["real_input"].toBool();
    const int act_bits = static_cast<int>(ctx->saved_data["act_bits"].toInt());
    const at::Tensor& w = saved.back();
    const at::Tensor dy = grads[0].contiguous();

    at::Tensor in;
    if (real_input) {
      in = saved[0];
    } else if (ctx->saved_data["sign_input"].toBool()) {
      in = UnpackSigns(saved[0], shape);
    } else {
      const double step = ctx->saved_data["act_step"].toDouble();
      in = UnpackCodes(saved[0], act_bits, shape)
               .to(at::kFloat)
               .add_(ctx->saved_data["code_min"].toInt())
               .mul_(step);
    }
    const at::Tensor wb = LayerWeights(w, binary_weights);
    const bool need_dx = ctx->needs_input_grad(0) && !real_input;
    at::Tensor dx, dw;
    if (in.dim() == 2) {
      if (need_dx) dx = dy.mm(wb);
      dw = dy.t().mm(in);
    } else {
      std::tie(dx, dw, std::ignore) = at::convolution_backward(
          dy, in, wb, c10::nullopt, {stride, stride}, {padding, padding}, {1, 1},
          /*transposed=*/false, {0, 0}, groups,
          {need_dx, true, false});
    }
    in.reset();
    if (need_dx) {
      dx = dx.contiguous();
      ApplyPackedMask(saved[1], dx);
      dx = RoundGradX(dx, hooks.grad_x);
    }
    Release(ctx, hooks);
    if (hooks.sign_grad != nullptr && binary_weights) {
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

constexpr float kBnEps = 1e-5f;

NchwShape ShapeOf(const at::Tensor& x) {
  NchwShape shape;
  shape.n = x.size(0);
  shape.c = x.size(1);
  shape.hw = x.dim() == 4 ? x.size(2) * x.size(3) : 1;
  return shape;
}

struct L1BatchNormFn : public Function<L1BatchNormFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& beta, at::Tensor* running_mean,
                            at::Tensor* running_sigma, double momentum,
                            const LayerHooks* hooks) {
    const at::Tensor in = x.contiguous();
    const NchwShape shape = ShapeOf(in);
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    at::Tensor mu = at::empty({shape.c}, f32);
    at::Tensor sigma = at::empty({shape.c}, f32);
    at::Tensor y = at::empty(in.sizes(), f32);
    at::Tensor bits = at::empty({static_cast<int64_t>(PackedBytes(shape.numel(), 1))},
                                at::TensorOptions().dtype(at::kByte));
    const at::Tensor shift = beta.detach().to(at::kFloat).contiguous();
    L1NormForward(in.data_ptr<float>(), shift.data_ptr<float>(), shape,
                  kBnEps, mu.data_ptr<float>(), sigma.data_ptr<float>(),
                  y.data_ptr<float>(), bits.data_ptr<uint8_t>(), TorchParallel());
    // mean|xhat| = mean|x - mu| / sigma, and sigma = mean|x - mu| + eps.
    const at::Tensor mean_abs = (sigma - kBnEps) / sigma;
    running_mean->mul_(1 - momentum).add_(mu, momentum);
    running_sigma->mul_(1 - momentum).add_(sigma, momentum);

    SaveForBackward(ctx, *hooks, {bits, sigma.to(at::kHalf), mean_abs.to(at::kHalf)}, x);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerHooks& hooks = *HooksOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const at::Tensor dy = grads[0].contiguous();
    const at::Tensor sigma = saved[1].to(at::kFloat);
    const at::Tensor mean_abs = saved[2].to(at::kFloat);
    at::Tensor dx = at::empty(shape, dy.options());
    at::Tensor dbeta = at::empty({sigma.size(0)}, dy.options());
    const bool bf16 = hooks.grad_x == GradXPrecision::kBFloat16;
    L1NormBackward(dy.data_ptr<float>(), saved[0].data_ptr<uint8_t>(),
                   sigma.data_ptr<float>(), mean_abs.data_ptr<float>(),
                   ShapeOf(dy), dx.data_ptr<float>(), dbeta.data_ptr<float>(),
                   TorchParallel(), /*round_to_bfloat16=*/bf16);
    Release(ctx, hooks);
    return {bf16 ? dx : RoundGradX(dx, hooks.grad_x), dbeta, at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct MaxPool2x2Fn : public Function<MaxPool2x2Fn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const LayerHooks* hooks) {
    const at::Tensor in = x.contiguous();
    const int64_t n = in.size(0), c = in.size(1), h = in.size(2), w = in.size(3);
    at::Tensor y = at::empty({n, c, h / 2, w / 2}, in.options());
    at::Tensor position = at::empty({n, c, h / 2, w / 2},
                                    at::TensorOptions().dtype(at::kByte));
    MaxPool2x2Forward(in.data_ptr<float>(), n * c, h, w, y.data_ptr<float>(),
                      position.data_ptr<uint8_t>(), TorchParallel());
    SaveForBackward(ctx, *hooks, {PackCodes(position, 2)}, x);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const LayerHooks& hooks = *HooksOf(ctx);
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> shape = ctx->saved_data["shape"].toIntVector();
    const int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
    const at::Tensor position = UnpackCodes(saved[0], 2, {n, c, h / 2, w / 2});
    const at::Tensor dy = grads[0].contiguous();
    at::Tensor dx = at::empty(shape, dy.options());
    MaxPool2x2Backward(dy.data_ptr<float>(), position.data_ptr<uint8_t>(),
                       n * c, h, w, dx.data_ptr<float>(), TorchParallel());
    Release(ctx, hooks);
    return {dx, at::Tensor()};
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

ConvConfig SymmetricInput(int bits, float step) {
  ConvConfig config;
  const int q = SymmetricLevels(bits);
  config.sign_input = false;
  config.act_bits = bits;
  config.act_step = step;
  config.code_min = -q;
  config.code_max = q;
  config.clip_lo = -q * step;
  config.clip_hi = q * step;
  return config;
}

ConvConfig LearnedInput(float step, float range, bool is_signed) {
  ConvConfig config;
  const int levels = static_cast<int>(std::lround(range / step));
  config.sign_input = false;
  config.act_step = step;
  config.code_min = is_signed ? -levels : 0;
  config.code_max = levels;
  config.clip_lo = is_signed ? -range : 0.0f;
  config.clip_hi = range;
  int bits = 1;
  while ((1 << bits) < config.code_max - config.code_min + 1) ++bits;
  config.act_bits = bits;
  return config;
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
    case GradXPrecision::kBFloat16: {
      at::Tensor out = g.contiguous().clone();
      RoundToBFloat16InPlace(out);
      return out;
    }
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
  TORCH_CHECK(config.real_input || config.sign_input ||
                  (config.act_bits >= 1 && config.act_bits <= 8),
              hooks.name, ": activation bits ", config.act_bits,
              " outside [1, 8]");
  TORCH_CHECK(config.sign_input || config.real_input ||
                  (config.act_step > 0 && config.code_min <= config.code_max &&
                   config.code_max - config.code_min < (1 << config.act_bits)),
              hooks.name, ": codes [", config.code_min, ", ", config.code_max,
              "] do not fit in ", config.act_bits, " bits");
  if (!Recording({&x, &w})) {
    // Frozen layers and evaluation: the same bit kernels, nothing saved.
    if (UsesBitKernels(config)) {
      PackedInput unused;
      return BitConvOutput(x, w, config, &unused);
    }
    return Compute(QuantizedInput(x, config), LayerWeights(w, config.binary_weights),
                   config.padding, config.stride, config.groups);
  }
  if (UsesBitKernels(config)) return BitConvFn::apply(x, w, &config, &hooks);
  return PackedConvFn::apply(x, w, &config, &hooks);
}

bool UsesBitKernels(const ConvConfig& config) {
  return config.bit_kernels && config.sign_input && !config.real_input &&
         config.binary_weights && config.groups == 1 && config.stride >= 1;
}

at::Tensor PackedConvPool(const at::Tensor& x, const at::Tensor& w, const ConvConfig& config,
                          const LayerHooks& hooks, const LayerHooks& pool_hooks) {
  TORCH_CHECK(UsesBitKernels(config), hooks.name,
              ": only a sign-input binary convolution on the bit kernels fuses its pool");
  TORCH_CHECK(x.dim() == 4, hooks.name, ": a fused pool needs a 4-D input");
  if (!Recording({&x, &w})) {
    PackedInput unused;
    at::Tensor position;
    return BitConvPoolOutput(x, w, config, hooks, &unused, &position);
  }
  return BitConvPoolFn::apply(x, w, &config, &hooks, &pool_hooks);
}

at::Tensor L1BatchNorm(const at::Tensor& x, const at::Tensor& beta,
                       at::Tensor& running_mean, at::Tensor& running_sigma,
                       bool training, double momentum,
                       const LayerHooks& hooks) {
  // Without a graph (evaluation, frozen layers) one output tensor beside
  // the input, updated in place: no full-size temporaries.
  if (!training) {
    at::NoGradGuard no_grad;
    return (x - PerChannel(running_mean, x))
        .div_(PerChannel(running_sigma, x))
        .add_(PerChannel(beta.detach(), x));
  }
  if (!Recording({&x, &beta})) {
    at::NoGradGuard no_grad;
    const std::vector<int64_t> dims = ReduceDims(x);
    at::Tensor centered = x - PerChannel(x.mean(dims), x);
    int64_t count = 1;
    for (int64_t d : dims) count *= x.size(d);
    const at::Tensor sigma =
        at::linalg_vector_norm(centered, 1, dims).div_(static_cast<double>(count)).add_(kBnEps);
    return centered.div_(PerChannel(sigma, x)).add_(PerChannel(beta.detach(), x));
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
