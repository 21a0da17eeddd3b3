#ifndef FEDGE_COMMON_UPDATE_CODEC_H_
#define FEDGE_COMMON_UPDATE_CODEC_H_

// Encodings of model tensors for the wire: uplink updates (fp32, fp16, qK,
// sign-ef) and downlink shards (fp16 latent weights, or the mixed-precision
// codes). Plain functions on spans; thread-compatible.
//
// Payload layouts (n elements in S equal, contiguous slices of n/S):
//   fp32    n little-endian float32                         4n bytes
//   fp16    n little-endian IEEE half                       2n bytes
//   q       per slice: codes at K bits, code = q + L with   sum PackedBytes(n/S, K)
//           q = stochastic round(x / scale * L), L = 2^(K-1) - 1,
//           scale = max |x| of the slice (SliceInfo.step)
//   sign-ef per slice: 1 bit per element (1: +scale, 0: -scale),
//           scale = mean |x| of the slice after error feedback
//   mixed   per slice: codes at SliceInfo.bits, code = clamp(round(x / d),
//           -N, N) + N with d = step, N = round(range / d); a binary slice
//           (N = 0, 1 bit): 1 for +range (x >= 0), 0 for -range
// Every slice starts on a byte boundary. common/bit_pack.h gives the bit order.
//
//   WireTensor t;  t.name = "weight";  t.shape = {64, 3, 3, 3};
//   RETURN_IF_ERROR(EncodeUpdate(delta, {Codec::kQ, 4, 64}, seed, nullptr, &t));
//   RETURN_IF_ERROR(AccumulateDecoded(t, weight, absl::MakeSpan(sum)));

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/env/env.h"
#include "common/wire/messages.h"

namespace fedge {

// Tensors with fewer elements than this (steps, ranges, biases, batch norm)
// travel as fp32 both ways: their bytes are negligible and they are
// sensitive to quantization.
inline constexpr int64_t kSmallTensorElements = 1024;

struct UpdateSpec {
  Codec codec = Codec::kFp32;
  int bits = 0;        // K for kQ (2..8)
  int64_t slices = 1;  // for kQ and kSignEf; must divide the element count
};

// The residual each agent keeps for sign-ef, per tensor key, across rounds,
// and can persist to disk. Not thread-safe.
class ErrorFeedback {
 public:
  // The residual for `key`, created zero with `n` elements; a stored residual
  // of another size is discarded (the model's shape changed).
  std::vector<float>& Residual(const std::string& key, size_t n);
  size_t size() const { return residuals_.size(); }

  // Atomic write (temporary file, fsync, rename) and checked read: a
  // truncated, corrupt or foreign file is an error and leaves this unchanged.
  absl::Status Save(const std::string& path, Env* env = Env::Default()) const;
  absl::Status Load(const std::string& path, Env* env = Env::Default());

 private:
  std::map<std::string, std::vector<float>> residuals_;
};

// Exact payload size for the header fields of `t`, or an error naming the
// inconsistency (slices not dividing n, bad bit-width, too many elements).
absl::StatusOr<size_t> PayloadBytes(const WireTensor& t);

// Encodes `values` into t->codec/bits/slices/payload (shape, name and layer
// are the caller's). kQ draws its rounding noise from `seed`; kSignEf needs
// `residual` (values.size() elements), which it reads and updates.
absl::Status EncodeUpdate(absl::Span<const float> values, const UpdateSpec& spec,
                          uint64_t seed, std::vector<float>* residual,
                          WireTensor* t);

// Encodes weights in the mixed-precision form with one (bits, step, range)
// per slice, as the quantizers learned them.
absl::Status EncodeMixed(absl::Span<const float> values,
                         absl::Span<const SliceInfo> slices, WireTensor* t);

// How a weight shard travels to an agent that runs its layer frozen, in the
// form its forward pass uses: codes at the learned bit-widths (kMixed, one
// (bits, step, range) per slice), or signs with one mean |w| per slice
// (kSignEf: a binary layer's forward uses sign(W) only).
struct FrozenCoding {
  Codec codec = Codec::kMixed;
  std::vector<SliceInfo> slices;  // kMixed
  int64_t sign_slices = 1;        // kSignEf
};

// Encodes `values` as `coding` says (shape, name and layer are the
// caller's).
absl::Status EncodeFrozen(absl::Span<const float> values, const FrozenCoding& coding,
                          WireTensor* t);

// Checks everything about `t` that decoding relies on: shape, codec, bits,
// slices, payload size, finite scales. Decode functions call it.
absl::Status ValidateTensor(const WireTensor& t);

// out = decoded values (out.size() must equal t.numel()). Non-finite
// decoded values are an error.
absl::Status DecodeTensor(const WireTensor& t, absl::Span<float> out);

// sum += weight * decoded, element by element, without materialising the
// decoded tensor. The tensor is checked in full first: on error `sum` is
// unchanged, so a bad update never half-lands in an aggregate.
absl::Status AccumulateDecoded(const WireTensor& t, float weight,
                               absl::Span<float> sum);

// Checks `t` in full as decoding would, and that every decoded value is
// finite and at most `max_abs` in magnitude. Errors carry a RejectReason
// (kNonFinite, kTooLarge, kMalformedUpdate). A result is validated whole
// with this before any of it is folded (AccumulateChecked).
absl::Status CheckUpdate(const WireTensor& t, float max_abs);

// sum += weight * decoded, for a tensor that passed CheckUpdate: no second
// scan. Fails only when `sum` does not fit `t` or the weight is not finite.
absl::Status AccumulateChecked(const WireTensor& t, float weight, absl::Span<float> sum);

}  // namespace fedge

#endif  // FEDGE_COMMON_UPDATE_CODEC_H_
