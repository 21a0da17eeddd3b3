#ifndef FEDGE_MODELS_BIT_TENSOR_H_
#define FEDGE_MODELS_BIT_TENSOR_H_

// Bit-packed tensors for what the memory-saving layers keep for backward:
// signs and straight-through masks at 1 bit per element, integer codes at
// k bits. The packed form is a 1-D uint8 tensor in the layout of
// common/bit_pack.h; the element count comes from the shape the caller keeps.
// Failures (bad width, wrong dtype) throw c10::Error, like any LibTorch op;
// the trainer's CallTorch guard turns them into a status.

#include <ATen/core/Tensor.h>

namespace fedge {

// x: float32. Bit = 1 where x >= 0.
at::Tensor PackSignsOf(const at::Tensor& x);
// Bit = 1 where |x| <= limit.
at::Tensor PackAbsLeqOf(const at::Tensor& x, float limit);
// Bit = 1 where lo <= x <= hi.
at::Tensor PackInRangeOf(const at::Tensor& x, float lo, float hi);
// A float32 tensor of the given shape holding +1 / -1.
at::Tensor UnpackSigns(const at::Tensor& packed, at::IntArrayRef shape);
// Zeroes `grad` (float32, contiguous) where the mask bit is 0, in place.
void ApplyPackedMask(const at::Tensor& packed, at::Tensor& grad);

// codes: uint8 with values below 2^bits, bits in [1, 8].
at::Tensor PackCodes(const at::Tensor& codes, int bits);
// A uint8 tensor of the given shape.
at::Tensor UnpackCodes(const at::Tensor& packed, int bits,
                       at::IntArrayRef shape);

}  // namespace fedge

#endif  // FEDGE_MODELS_BIT_TENSOR_H_
