#ifndef FEDGE_MODELS_BINARY_OPS_H_
#define FEDGE_MODELS_BINARY_OPS_H_

// Memory-saving training ops (design 4.2), as LibTorch custom autograd
// functions that keep only packed bits for backward:
//
// - PackedConv: convolution (4-D input) or linear layer (2-D input) with
//   binary weights sign(W) and a quantized input: sign(x) (1 bit) or k-bit
//   symmetric codes with step d. Saves the packed input codes and a packed
//   1-bit straight-through mask; backward computes dW from them and
//   dX = dY * sign(W), masked. The first layer keeps its real input.
// - L1BatchNorm: mu = mean(x), sigma = mean|x - mu|, y = (x - mu)/sigma + beta;
//   saves 1-bit sign(xhat) and per-channel sigma and mean|xhat| in 16 bits;
//   backward replaces xhat by sign(xhat) * mean|xhat|.
// - PackedMaxPool2x2: saves the argmax position in each 2x2 window at 2 bits.
//
// Every saved byte is reported to the layer's MemoryLedger (when set) at save
// time and released when backward has used it. Errors throw c10::Error.

#include <ATen/core/Tensor.h>

#include <string>

#include "models/memory/memory_ledger.h"

namespace fedge {

// Precision of the activation gradient each op hands back (design 4.2 table).
enum class GradXPrecision {
  kFloat32,
  kFloat16,   // rounded to IEEE half (underflows below 6e-8)
  kBFloat16,  // rounded to bfloat16: float32's range, 8-bit mantissa
  kPow2,     // 5 bits: sign and a 4-bit power-of-two exponent below the max
};

// Receives a layer's weight gradient as 1-bit signs and one scale
// (mean |dW|) instead of a float tensor.
struct SignGrad {
  at::Tensor bits;  // packed sign(dW), 1-D uint8
  float scale = 0.0f;
  bool ready = false;
};

// Per-layer wiring for the ops. Not owned by the ops; must outlive the
// autograd graph that uses it.
struct LayerHooks {
  std::string name;
  MemoryLedger* ledger = nullptr;  // optional
  SignGrad* sign_grad = nullptr;   // optional: float dW goes to w.grad if null
  GradXPrecision grad_x = GradXPrecision::kFloat32;
};

struct ConvConfig {
  int padding = 0;
  int stride = 1;
  int groups = 1;           // in_channels for a depthwise convolution
  bool real_input = false;  // first layer: input used and saved as is
  // sign(W) (latent binary weights), or W as given (already quantized by a
  // learned weight quantizer, whose backward receives dW).
  bool binary_weights = true;
  // Input quantization. sign_input: sign(x), mask |x| <= 1. Otherwise
  // codes = clamp(round(x / act_step), code_min, code_max), saved as
  // code - code_min in act_bits bits, with the mask clip_lo <= x <= clip_hi.
  bool sign_input = true;
  int act_bits = 1;
  float act_step = 1.0f;
  int code_min = 0, code_max = 0;
  float clip_lo = 0, clip_hi = 0;
  // Binary weights on a sign input run on the bit-packed kernels
  // (models/kernels/binary_conv.h): XNOR-popcount forward, int8 x bit
  // backward with dY quantized to int8 per tensor. false: float
  // convolutions on +-1 values and a float backward, for comparison.
  bool bit_kernels = true;
};

// k-bit symmetric input: codes -q..q of `step`, q = 2^(bits-1) - 1.
ConvConfig SymmetricInput(int bits, float step);
// The input quantizer of a learned (step, range): codes -N..N (signed) or
// 0..N with N = round(range / step), packed at the fewest bits that hold them.
ConvConfig LearnedInput(float step, float range, bool is_signed);

// x: [N, C, H, W] with w: [O, C, k, k], or x: [N, C] with w: [O, C].
// w may be float32 or float16 (latent weights); it must require grad for
// the op to deliver a weight gradient.
at::Tensor PackedConv(const at::Tensor& x, const at::Tensor& w,
                      const ConvConfig& config, const LayerHooks& hooks);

// Whether `config` runs on the bit-packed kernels (a sign-input binary
// convolution with bit_kernels set): what PackedConv then uses and what
// PackedConvPool needs.
bool UsesBitKernels(const ConvConfig& config);

// PackedConv followed by PackedMaxPool2x2, fused: the full-size output is
// never materialised; the pool's 2-bit positions go on pool_hooks' ledger
// line. Same results as the two ops apart (tested).
at::Tensor PackedConvPool(const at::Tensor& x, const at::Tensor& w, const ConvConfig& config,
                          const LayerHooks& hooks, const LayerHooks& pool_hooks);

// x: [N, C, H, W] or [N, C]; beta: [C]. In training, updates running_mean
// and running_sigma (float32 [C]) in place with `momentum`; in evaluation,
// normalizes with them and records nothing for backward.
at::Tensor L1BatchNorm(const at::Tensor& x, const at::Tensor& beta,
                       at::Tensor& running_mean, at::Tensor& running_sigma,
                       bool training, double momentum,
                       const LayerHooks& hooks);

// x: [N, C, H, W]; 2x2 windows, stride 2, floor mode.
at::Tensor PackedMaxPool2x2(const at::Tensor& x, const LayerHooks& hooks);

// Forward helpers shared with the standard trainer and tests.
at::Tensor SignOf(const at::Tensor& x);  // +1 where x >= 0, else -1 (float32)
at::Tensor RoundGradX(const at::Tensor& g, GradXPrecision precision);
// The k-bit symmetric quantizer of PackedConv: clamp(round(x/d), -q, q) * d
// with q = 2^(bits-1) - 1.
at::Tensor QuantizeSymmetric(const at::Tensor& x, int bits, float step);

}  // namespace fedge

#endif  // FEDGE_MODELS_BINARY_OPS_H_
