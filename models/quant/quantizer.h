#ifndef FEDGE_MODELS_QUANTIZER_H_
#define FEDGE_MODELS_QUANTIZER_H_

// The differentiable mixed-precision quantizer of design 4.1 (Uhlich et al.
// parametrization, as used by Schaefer, Joshi et al.): each slice learns a
// step d and a range xmax, hence its own bit-width.
//
//   x~ = clip(x, -xmax, xmax) (signed) or clip(x, 0, xmax) (unsigned)
//   Q(x) = d * round(x~ / d)
//   b = max(ceil(log2(round(xmax / d) + 1)) + [signed], b_min)
//
// Backward, with v = x~/d, g = dL/dQ and the gradient modification m:
//   weights (element-wise scaling):  m = 1 + delta sign(g) (v - round(v))
//   activations (inverse tanh):      m = 1 + delta sign(g) (0.5 / atanh(alpha/2))
//                                            atanh(alpha (v - round(v)))
//   dL/dx    = g m                    inside the clip range, 0 outside
//   dL/dd    = sum g (round(v) - m v)   over the slice
//   dL/dxmax = sum +-g m                over the elements clipped at +-xmax
// each element's contribution to dL/dd and dL/dxmax clipped to [-d, d].
// Slices run along dimension 0 when d has more than one element (one per
// output channel of a convolution, depthwise included); otherwise d and xmax
// are per tensor.
//
// Binary slices (1 bit), where the config allows them (signed weights): a
// slice with no levels, round(xmax / d) = 0 (d > 2 xmax), is sign x scale,
//   Q(x) = xmax (x >= 0) or -xmax (x < 0),
// with dL/dx = g inside [-xmax, xmax], dL/dxmax = sum g sign(x) and
// dL/dd = 0; the bit-width formula gives 1 bit for it. Only the projection
// onto a budget makes a slice binary (the learned step never reaches it:
// the constraints keep d < xmax), and the constraints keep it binary.
//
// Errors throw c10::Error (callers guard with CallTorch).

#include <ATen/core/Tensor.h>

namespace fedge {

struct QuantizerConfig {
  bool is_signed = true;
  bool is_weight = true;  // weights: element-wise scaling; else inverse tanh
  int min_bits = 1;
  int max_bits = 8;  // what the bit packing supports
  // Signed weights: slices may be binary (above). Off: a signed slice's
  // floor is 2 bits (-d, 0, d).
  bool binary_slices = true;
  double delta = 5e-3;
  double alpha = 1.9;
  // Constraints enforced after each update (design 4.1).
  double d_min = 1.0 / 4096;  // 2^-12
  double d_max = 1.0;         // 8 for activations
  double xmax_min = 1.0 / 256;
  double xmax_max = 127;
};

QuantizerConfig WeightQuantizerConfig();
QuantizerConfig ActivationQuantizerConfig(bool is_signed);

// Q(x), recording the custom backward above when any input requires grad.
at::Tensor Quantize(const at::Tensor& x, const at::Tensor& d, const at::Tensor& xmax,
                    const QuantizerConfig& config);

// Per-slice bit-widths, differentiable in d and xmax through straight-through
// round and ceil (the size penalty's gradient path).
at::Tensor BitWidths(const at::Tensor& d, const at::Tensor& xmax,
                     const QuantizerConfig& config);

// Whether the config allows binary slices, and which slices are binary.
bool AllowsBinary(const QuantizerConfig& config);
at::Tensor BinarySlices(const at::Tensor& d, const at::Tensor& xmax);
// The smallest bit-width a slice of this quantizer may have: 1 for binary
// weights and unsigned activations, 2 for other signed quantizers.
int FloorBits(const QuantizerConfig& config);

// Integer bit-widths for reporting and for packing.
std::vector<int> IntegerBitWidths(const at::Tensor& d, const at::Tensor& xmax,
                                  const QuantizerConfig& config);

// Enforces d < xmax, d in [d_min, d_max], xmax in [xmax_min, xmax_max], and
// at most max_bits (d >= xmax / levels(max_bits)), in place, without
// recording gradients. A binary slice keeps xmax in its range and d above
// 2 xmax (it stays binary).
void ConstrainQuantizer(at::Tensor& d, at::Tensor& xmax, const QuantizerConfig& config);

// Initialisation (design 4.1). Weights, per slice along dimension 0 when
// `per_slice`: xmax = max(|mu - 3 sigma|, |mu + 3 sigma|). Activations, per
// tensor: xmax = the 99.9th percentile of |x| on one batch. Then
// d = xmax / (2^(b0-1) - 1) (signed) or xmax / (2^b0 - 1) (unsigned).
void InitWeightQuantizer(const at::Tensor& w, bool per_slice, int bits0,
                         const QuantizerConfig& config, at::Tensor* d, at::Tensor* xmax);
void InitActivationQuantizer(const at::Tensor& x, int bits0, const QuantizerConfig& config,
                             at::Tensor* d, at::Tensor* xmax);

}  // namespace fedge

#endif  // FEDGE_MODELS_QUANTIZER_H_
