#include "models/bnn/bit_tensor.h"

#include <ATen/ATen.h>

#include "absl/types/span.h"
#include "common/codec/bit_pack.h"
#include "models/bnn/torch_parallel.h"

namespace fedge {
namespace {

// Elements per parallel chunk: a multiple of 8, so every chunk starts on a
// byte boundary for any width.
constexpr int64_t kChunk = 8 * 4096;

int64_t Numel(at::IntArrayRef shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

at::Tensor Floats(const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat, "expected float32, got ",
              x.scalar_type());
  return x.contiguous();
}

// Runs `fn(begin, end)` over element ranges aligned to kChunk.
template <typename Fn>
void ForChunks(int64_t n, Fn fn) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  TorchParallel()(chunks, [&](int64_t first, int64_t last) {
    for (int64_t c = first; c < last; ++c) {
      fn(c * kChunk, std::min(n, (c + 1) * kChunk));
    }
  });
}

template <typename PackFn>
at::Tensor PackFloats(const at::Tensor& x, PackFn pack) {
  const at::Tensor in = Floats(x);
  const int64_t n = in.numel();
  at::Tensor out = at::empty({static_cast<int64_t>(PackedBytes(n, 1))},
                             at::TensorOptions().dtype(at::kByte));
  const float* src = in.data_ptr<float>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  ForChunks(n, [&](int64_t begin, int64_t end) {
    pack(absl::MakeConstSpan(src + begin, end - begin),
         absl::MakeSpan(dst + begin / 8, PackedBytes(end - begin, 1)));
  });
  return out;
}

}  // namespace

at::Tensor PackSignsOf(const at::Tensor& x) {
  return PackFloats(x, [](absl::Span<const float> in, absl::Span<uint8_t> out) {
    PackSigns(in, out);
  });
}

at::Tensor PackAbsLeqOf(const at::Tensor& x, float limit) {
  return PackFloats(
      x, [limit](absl::Span<const float> in, absl::Span<uint8_t> out) {
        PackAbsLeq(in, limit, out);
      });
}

at::Tensor PackInRangeOf(const at::Tensor& x, float lo, float hi) {
  return PackFloats(x, [lo, hi](absl::Span<const float> in, absl::Span<uint8_t> out) {
    PackInRange(in, lo, hi, out);
  });
}

at::Tensor UnpackSigns(const at::Tensor& packed, at::IntArrayRef shape) {
  const int64_t n = Numel(shape);
  TORCH_CHECK(packed.scalar_type() == at::kByte &&
                  packed.numel() == static_cast<int64_t>(PackedBytes(n, 1)),
              "packed signs do not match shape ", shape);
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  float* dst = out.data_ptr<float>();
  ForChunks(n, [&](int64_t begin, int64_t end) {
    UnpackSigns(absl::MakeConstSpan(src + begin / 8, PackedBytes(end - begin, 1)),
                absl::MakeSpan(dst + begin, end - begin));
  });
  return out;
}

void ApplyPackedMask(const at::Tensor& packed, at::Tensor& grad) {
  TORCH_CHECK(grad.scalar_type() == at::kFloat && grad.is_contiguous(),
              "mask target must be contiguous float32");
  const int64_t n = grad.numel();
  TORCH_CHECK(packed.scalar_type() == at::kByte &&
                  packed.numel() == static_cast<int64_t>(PackedBytes(n, 1)),
              "packed mask does not match gradient of ", n, " elements");
  const uint8_t* mask = packed.data_ptr<uint8_t>();
  float* g = grad.data_ptr<float>();
  ForChunks(n, [&](int64_t begin, int64_t end) {
    ApplyMask(absl::MakeConstSpan(mask + begin / 8, PackedBytes(end - begin, 1)),
              absl::MakeSpan(g + begin, end - begin));
  });
}

at::Tensor PackCodes(const at::Tensor& codes, int bits) {
  TORCH_CHECK(codes.scalar_type() == at::kByte, "codes must be uint8");
  TORCH_CHECK(bits >= kMinPackBits && bits <= kMaxPackBits, "bit width ",
              bits, " outside [1, 8]");
  const at::Tensor in = codes.contiguous();
  const int64_t n = in.numel();
  at::Tensor out = at::empty({static_cast<int64_t>(PackedBytes(n, bits))},
                             at::TensorOptions().dtype(at::kByte));
  const uint8_t* src = in.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  ForChunks(n, [&](int64_t begin, int64_t end) {
    const absl::Status status =
        PackBits(absl::MakeConstSpan(src + begin, end - begin), bits,
                 absl::MakeSpan(dst + begin / 8 * bits,
                                PackedBytes(end - begin, bits)));
    TORCH_CHECK(status.ok(), "packing codes: ", status.ToString());
  });
  return out;
}

at::Tensor UnpackCodes(const at::Tensor& packed, int bits,
                       at::IntArrayRef shape) {
  TORCH_CHECK(bits >= kMinPackBits && bits <= kMaxPackBits, "bit width ",
              bits, " outside [1, 8]");
  const int64_t n = Numel(shape);
  TORCH_CHECK(packed.scalar_type() == at::kByte &&
                  packed.numel() == static_cast<int64_t>(PackedBytes(n, bits)),
              "packed codes do not match shape ", shape, " at ", bits, " bits");
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kByte));
  const uint8_t* src = packed.data_ptr<uint8_t>();
  uint8_t* dst = out.data_ptr<uint8_t>();
  ForChunks(n, [&](int64_t begin, int64_t end) {
    const absl::Status status = UnpackBits(
        absl::MakeConstSpan(src + begin / 8 * bits,
                            PackedBytes(end - begin, bits)),
        bits, absl::MakeSpan(dst + begin, end - begin));
    TORCH_CHECK(status.ok(), "unpacking codes: ", status.ToString());
  });
  return out;
}

}  // namespace fedge
