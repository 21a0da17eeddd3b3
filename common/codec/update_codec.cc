#include "common/codec/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/codec/bit_pack.h"
#include "common/io/byte_io.h"
#include "common/io/file_util.h"
#include "common/codec/half.h"
#include "common/status/reject_reason.h"
#include "common/status/status_macros.h"

namespace fedge {
namespace {

constexpr int64_t kMaxTensorElements = int64_t{1} << 28;
constexpr size_t kMaxRank = 8;
// Elements decoded per step when streaming a packed slice: a multiple of 8,
// so every step starts on a byte boundary at any width.
constexpr int64_t kDecodeChunk = 4096;

// splitmix64: small, fast and good enough for rounding noise.
class NoiseSource {
 public:
  explicit NoiseSource(uint64_t seed) : state_(seed) {}
  float Uniform() {  // [0, 1)
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  }

 private:
  uint64_t state_;
};

int Levels(int bits) { return (1 << (bits - 1)) - 1; }

int64_t MixedHalfRange(const SliceInfo& s) {
  return static_cast<int64_t>(std::lround(s.range / s.step));
}

absl::Status CheckSlices(const WireTensor& t, int64_t n) {
  const bool sliced = t.codec == Codec::kQ || t.codec == Codec::kSignEf ||
                      t.codec == Codec::kMixed;
  if (!sliced) {
    if (!t.slices.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          CodecName(t.codec), " tensor carries ", t.slices.size(), " slices"));
    }
    return absl::OkStatus();
  }
  const int64_t s = static_cast<int64_t>(t.slices.size());
  if (s < 1 || s > n || n % s != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        t.slices.size(), " slices do not divide ", n, " elements"));
  }
  if (t.codec == Codec::kQ && (t.bits < 2 || t.bits > 8)) {
    return absl::InvalidArgumentError(
        absl::StrCat("q codec needs 2..8 bits, got ", int{t.bits}));
  }
  for (size_t i = 0; i < t.slices.size(); ++i) {
    const SliceInfo& slice = t.slices[i];
    if (!std::isfinite(slice.step) || slice.step < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "slice ", i, ": scale ", slice.step, " is not a finite non-negative number"));
    }
    if (t.codec == Codec::kMixed) {
      if (slice.bits < 1 || slice.bits > 8 || !(slice.step > 0) ||
          !std::isfinite(slice.range) || slice.range < 0 ||
          slice.range / slice.step > 1e6) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slice ", i, ": bits ", int{slice.bits}, " step ", slice.step,
            " range ", slice.range, " is not a valid quantizer"));
      }
      const int64_t half = MixedHalfRange(slice);
      if (half == 0 && slice.bits != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slice ", i, ": a binary slice (no levels) has ", int{slice.bits}, " bits, not 1"));
      }
      if (2 * half >= (int64_t{1} << slice.bits)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slice ", i, ": ", 2 * half + 1, " levels do not fit in ",
            int{slice.bits}, " bits"));
      }
    }
  }
  return absl::OkStatus();
}

int SliceBits(const WireTensor& t, size_t slice) {
  switch (t.codec) {
    case Codec::kQ:
      return t.bits;
    case Codec::kSignEf:
      return 1;
    case Codec::kMixed:
      return t.slices[slice].bits;
    default:
      return 0;
  }
}

struct SliceCoding {
  int bits = 0;
  int64_t zero = 0;      // code of the value 0
  int64_t max_code = 0;  // largest valid code
  float unit = 0;        // value of one code step
  float bias = 0;        // value = (code - zero) * unit + bias
  float Value(uint8_t code) const { return static_cast<float>(code - zero) * unit + bias; }
};

SliceCoding CodingOf(const WireTensor& t, size_t s) {
  SliceCoding c;
  c.bits = SliceBits(t, s);
  const SliceInfo& slice = t.slices[s];
  switch (t.codec) {
    case Codec::kQ:
      c.zero = Levels(c.bits);
      c.max_code = 2 * c.zero;
      c.unit = slice.step / static_cast<float>(c.zero);
      break;
    case Codec::kSignEf:
      c.max_code = 1;
      break;
    default:  // kMixed
      c.zero = MixedHalfRange(slice);
      c.max_code = 2 * c.zero;
      c.unit = slice.step;
      if (c.zero == 0) {  // binary: 1 for +range, 0 for -range
        c.max_code = 1;
        c.unit = 2 * slice.range;
        c.bias = -slice.range;
      }
      break;
  }
  return c;
}

// Calls fn(slice, coding, first element, codes, count) for consecutive
// chunks of unpacked codes.
template <typename Fn>
absl::Status ForEachCodeChunk(const WireTensor& t, Fn fn) {
  const int64_t n = t.numel();
  const auto* bytes = reinterpret_cast<const uint8_t*>(t.bytes().data());
  const int64_t per_slice = n / static_cast<int64_t>(t.slices.size());
  uint8_t codes[kDecodeChunk];
  size_t offset = 0;
  for (size_t s = 0; s < t.slices.size(); ++s) {
    const SliceCoding coding = CodingOf(t, s);
    for (int64_t begin = 0; begin < per_slice; begin += kDecodeChunk) {
      const int64_t count = std::min(kDecodeChunk, per_slice - begin);
      const size_t packed = PackedBytes(count, coding.bits);
      RETURN_IF_ERROR(UnpackBits(absl::MakeConstSpan(bytes + offset, packed), coding.bits,
                                 absl::MakeSpan(codes, count)));
      offset += packed;
      RETURN_IF_ERROR(fn(s, coding, static_cast<int64_t>(s) * per_slice + begin, codes, count));
    }
  }
  return absl::OkStatus();
}

// Everything that could make decoding fail, and every decoded value finite
// and no larger than `max_abs` in magnitude, checked before any output is
// written, so a bad tensor never half-lands in an aggregate.
absl::Status CheckDecodable(const WireTensor& t, float max_abs) {
  RETURN_IF_ERROR(WithReason(ValidateTensor(t), RejectReason::kMalformedUpdate));
  const int64_t n = t.numel();
  const auto* bytes = reinterpret_cast<const uint8_t*>(t.bytes().data());
  const bool bounded = max_abs < std::numeric_limits<float>::infinity();
  auto too_large = [&](int64_t i, float v) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat(
                          "element ", i, " = ", v, " exceeds the magnitude bound ", max_abs)),
                      RejectReason::kTooLarge);
  };
  auto non_finite = [](int64_t i) {
    return WithReason(absl::InvalidArgumentError(absl::StrCat("element ", i, " is not finite")),
                      RejectReason::kNonFinite);
  };
  switch (t.codec) {
    case Codec::kFp32: {
      // Positive floats order like their bit patterns, so one integer
      // compare per element checks both "finite" and "|v| <= max_abs"; the
      // scan is branch-free (the compiler vectorizes it) and the index is
      // looked up only when something is wrong.
      uint32_t limit = 0x7F7FFFFFu;  // the largest finite float
      if (bounded) std::memcpy(&limit, &max_abs, 4);
      uint32_t any = 0;
      for (int64_t i = 0; i < n; ++i) {
        uint32_t u;
        std::memcpy(&u, bytes + 4 * i, 4);
        any |= static_cast<uint32_t>((u & 0x7FFFFFFFu) > limit);
      }
      if (any == 0) return absl::OkStatus();
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, bytes + 4 * i, 4);
        if (!std::isfinite(v)) return non_finite(i);
        if (std::fabs(v) > max_abs) return too_large(i, v);
      }
      return absl::OkStatus();
    }
    case Codec::kFp16: {
      // A half's magnitude never exceeds 65504: bounds above it need no look.
      const bool check_magnitude = bounded && max_abs < 65504.0f;
      for (int64_t i = 0; i < n; ++i) {
        if ((bytes[2 * i + 1] & 0x7C) == 0x7C) return non_finite(i);
        if (check_magnitude) {
          const float v =
              HalfToFloat(static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8)));
          if (std::fabs(v) > max_abs) return too_large(i, v);
        }
      }
      return absl::OkStatus();
    }
    case Codec::kSignEf:
      // Every 1-bit code is valid; each value is +-scale.
      for (size_t s = 0; s < t.slices.size(); ++s) {
        if (std::fabs(t.slices[s].step) > max_abs) {
          return too_large(static_cast<int64_t>(s) * (n / static_cast<int64_t>(t.slices.size())),
                           t.slices[s].step);
        }
      }
      return absl::OkStatus();
    default:
      return ForEachCodeChunk(t, [&](size_t s, const SliceCoding& c, int64_t base,
                                     const uint8_t* codes, int64_t count) -> absl::Status {
        for (int64_t i = 0; i < count; ++i) {
          if (codes[i] > c.max_code) {
            return WithReason(absl::InvalidArgumentError(absl::StrCat(
                                  "slice ", s, ": code ", int{codes[i]}, " exceeds ", c.max_code)),
                              RejectReason::kMalformedUpdate);
          }
          if (bounded) {
            const float v = c.Value(codes[i]);
            if (std::fabs(v) > max_abs) return too_large(base + i, v);
          }
        }
        return absl::OkStatus();
      });
  }
}

// out[i] = decoded (kAssign) or sum[i] += weight * decoded (kAccumulate), for
// a tensor that passed CheckDecodable.
enum class Mode { kAssign, kAccumulate };

template <Mode mode>
inline void Emit(float* out, int64_t i, float weight, float v) {
  if (mode == Mode::kAssign) {
    out[i] = v;
  } else {
    out[i] += weight * v;
  }
}

template <Mode mode>
absl::Status DecodeChecked(const WireTensor& t, float weight, float* out) {
  const int64_t n = t.numel();
  const auto* bytes = reinterpret_cast<const uint8_t*>(t.bytes().data());
  switch (t.codec) {
    case Codec::kFp32:
      for (int64_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, bytes + 4 * i, 4);
        Emit<mode>(out, i, weight, v);
      }
      return absl::OkStatus();
    case Codec::kFp16:
      for (int64_t i = 0; i < n; ++i) {
        Emit<mode>(out, i, weight,
                   HalfToFloat(static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8))));
      }
      return absl::OkStatus();
    case Codec::kSignEf: {
      // Straight from the packed bits: +scale where set, -scale where not.
      const int64_t per_slice = n / static_cast<int64_t>(t.slices.size());
      size_t offset = 0;
      for (size_t s = 0; s < t.slices.size(); ++s) {
        const float scale = t.slices[s].step;
        float* o = out + static_cast<int64_t>(s) * per_slice;
        const uint8_t* b = bytes + offset;
        for (int64_t i = 0; i < per_slice; ++i) {
          const float sign = static_cast<float>(2 * ((b[i >> 3] >> (i & 7)) & 1) - 1);
          Emit<mode>(o, i, weight, sign * scale);
        }
        offset += PackedBytes(per_slice, 1);
      }
      return absl::OkStatus();
    }
    default:
      return ForEachCodeChunk(t, [&](size_t, const SliceCoding& c, int64_t base,
                                     const uint8_t* codes, int64_t count) {
        float* o = out + base;
        for (int64_t i = 0; i < count; ++i) {
          Emit<mode>(o, i, weight, c.Value(codes[i]));
        }
        return absl::OkStatus();
      });
  }
}

// Appends the codes of one slice, packed, to `payload`.
absl::Status AppendPacked(const std::vector<uint8_t>& codes, int bits,
                          std::string* payload) {
  const size_t offset = payload->size();
  payload->resize(offset + PackedBytes(codes.size(), bits));
  return PackBits(codes, bits,
                  absl::MakeSpan(reinterpret_cast<uint8_t*>(payload->data()) + offset,
                                 payload->size() - offset));
}

absl::Status CheckFinite(absl::Span<const float> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("value ", i, " to encode is not finite"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<size_t> PayloadBytes(const WireTensor& t) {
  if (t.shape.empty() || t.shape.size() > kMaxRank) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor rank ", t.shape.size(), " is outside [1, ", kMaxRank, "]"));
  }
  int64_t n = 1;
  for (uint32_t d : t.shape) {
    if (d == 0) return absl::InvalidArgumentError("tensor has a zero dimension");
    n *= d;
    if (n > kMaxTensorElements) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor has more than ", kMaxTensorElements, " elements"));
    }
  }
  RETURN_IF_ERROR(CheckSlices(t, n));
  switch (t.codec) {
    case Codec::kFp32:
      return static_cast<size_t>(4 * n);
    case Codec::kFp16:
      return static_cast<size_t>(2 * n);
    case Codec::kQ:
    case Codec::kSignEf:
    case Codec::kMixed: {
      const int64_t per_slice = n / static_cast<int64_t>(t.slices.size());
      size_t total = 0;
      for (size_t s = 0; s < t.slices.size(); ++s) {
        total += PackedBytes(per_slice, SliceBits(t, s));
      }
      return total;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown codec ", static_cast<int>(t.codec)));
}

absl::Status ValidateTensor(const WireTensor& t) {
  ASSIGN_OR_RETURN(const size_t want, PayloadBytes(t));
  if (t.bytes().size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        CodecName(t.codec), " tensor '", t.name, "' of ", t.numel(),
        " elements needs ", want, " payload bytes, got ", t.bytes().size()));
  }
  return absl::OkStatus();
}

absl::Status EncodeUpdate(absl::Span<const float> values, const UpdateSpec& spec,
                          uint64_t seed, std::vector<float>* residual,
                          WireTensor* t) {
  RETURN_IF_ERROR(CheckFinite(values));
  const int64_t n = static_cast<int64_t>(values.size());
  t->codec = spec.codec;
  t->bits = 0;
  t->slices.clear();
  t->payload.clear();
  t->shared_payload.reset();
  switch (spec.codec) {
    case Codec::kFp32:
      t->payload.resize(4 * n);
      std::memcpy(t->payload.data(), values.data(), 4 * n);
      break;
    case Codec::kFp16:
      t->payload.resize(2 * n);
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = FloatToHalf(values[i]);
        t->payload[2 * i] = static_cast<char>(h & 0xFF);
        t->payload[2 * i + 1] = static_cast<char>(h >> 8);
      }
      break;
    case Codec::kQ:
    case Codec::kSignEf: {
      if (spec.slices < 1 || n % spec.slices != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            spec.slices, " slices do not divide ", n, " elements"));
      }
      if (spec.codec == Codec::kQ && (spec.bits < 2 || spec.bits > 8)) {
        return absl::InvalidArgumentError(
            absl::StrCat("q codec needs 2..8 bits, got ", spec.bits));
      }
      if (spec.codec == Codec::kSignEf &&
          (residual == nullptr || static_cast<int64_t>(residual->size()) != n)) {
        return absl::InvalidArgumentError(
            "sign-ef needs an error-feedback residual of the tensor's size");
      }
      t->bits = spec.codec == Codec::kQ ? static_cast<uint8_t>(spec.bits) : 1;
      const int64_t per_slice = n / spec.slices;
      NoiseSource noise(seed);
      std::vector<uint8_t> codes(per_slice);
      for (int64_t s = 0; s < spec.slices; ++s) {
        const float* x = values.data() + s * per_slice;
        SliceInfo info;
        info.bits = t->bits;
        if (spec.codec == Codec::kQ) {
          float scale = 0;
          for (int64_t i = 0; i < per_slice; ++i) scale = std::max(scale, std::fabs(x[i]));
          const int levels = Levels(spec.bits);
          const float to_level = scale > 0 ? levels / scale : 0;
          for (int64_t i = 0; i < per_slice; ++i) {
            const float v = x[i] * to_level;
            const float q = std::clamp(std::floor(v + noise.Uniform()),
                                       static_cast<float>(-levels),
                                       static_cast<float>(levels));
            codes[i] = static_cast<uint8_t>(static_cast<int>(q) + levels);
          }
          info.step = scale;
        } else {
          float* r = residual->data() + s * per_slice;
          double l1 = 0;
          for (int64_t i = 0; i < per_slice; ++i) {
            r[i] += x[i];  // r now holds the corrected value
            l1 += std::fabs(r[i]);
          }
          const float scale = static_cast<float>(l1 / per_slice);
          for (int64_t i = 0; i < per_slice; ++i) {
            codes[i] = r[i] >= 0 ? 1 : 0;
            r[i] -= codes[i] ? scale : -scale;
          }
          info.step = scale;
        }
        t->slices.push_back(info);
        RETURN_IF_ERROR(AppendPacked(codes, t->bits, &t->payload));
      }
      break;
    }
    case Codec::kMixed:
      return absl::InvalidArgumentError(
          "mixed is a downlink shard encoding: use EncodeMixed");
  }
  return absl::OkStatus();
}

absl::Status EncodeMixed(absl::Span<const float> values,
                         absl::Span<const SliceInfo> slices, WireTensor* t) {
  RETURN_IF_ERROR(CheckFinite(values));
  t->codec = Codec::kMixed;
  t->bits = 0;
  t->slices.assign(slices.begin(), slices.end());
  t->payload.clear();
  t->shared_payload.reset();
  const int64_t n = static_cast<int64_t>(values.size());
  RETURN_IF_ERROR(CheckSlices(*t, n));
  const int64_t per_slice = n / static_cast<int64_t>(slices.size());
  BitWriter writer(&t->payload);
  for (size_t s = 0; s < slices.size(); ++s) {
    const SliceInfo& slice = slices[s];
    const int64_t half = MixedHalfRange(slice);
    const float* x = values.data() + s * per_slice;
    for (int64_t i = 0; i < per_slice; ++i) {
      const int64_t q = half == 0 ? (x[i] >= 0 ? 1 : 0)  // binary: the sign
                                  : std::clamp<int64_t>(std::lround(x[i] / slice.step), -half, half) + half;
      RETURN_IF_ERROR(writer.Put(static_cast<uint32_t>(q), slice.bits));
    }
    writer.AlignToByte();  // each slice starts on a byte (the layout above)
  }
  return absl::OkStatus();
}

absl::Status EncodeFrozen(absl::Span<const float> values, const FrozenCoding& coding,
                          WireTensor* t) {
  switch (coding.codec) {
    case Codec::kMixed:
      return EncodeMixed(values, coding.slices, t);
    case Codec::kSignEf: {
      // Signs of the values themselves: a zero residual carries nothing over.
      std::vector<float> residual(values.size(), 0.0f);
      return EncodeUpdate(values, {Codec::kSignEf, 0, coding.sign_slices}, 0, &residual, t);
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(CodecName(coding.codec), " is not a frozen-layer coding"));
  }
}

absl::Status DecodeTensor(const WireTensor& t, absl::Span<float> out) {
  if (static_cast<int64_t>(out.size()) != t.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "decoding '", t.name, "': output holds ", out.size(), " elements, tensor has ",
        t.numel()));
  }
  RETURN_IF_ERROR(CheckDecodable(t, std::numeric_limits<float>::infinity()));
  return DecodeChecked<Mode::kAssign>(t, 1.0f, out.data());
}

absl::Status AccumulateDecoded(const WireTensor& t, float weight,
                               absl::Span<float> sum) {
  if (static_cast<int64_t>(sum.size()) != t.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "accumulating '", t.name, "': sum holds ", sum.size(), " elements, tensor has ",
        t.numel()));
  }
  if (!std::isfinite(weight)) {
    return absl::InvalidArgumentError(absl::StrCat("weight ", weight, " is not finite"));
  }
  RETURN_IF_ERROR(CheckDecodable(t, std::numeric_limits<float>::infinity()));
  return DecodeChecked<Mode::kAccumulate>(t, weight, sum.data());
}

absl::Status CheckUpdate(const WireTensor& t, float max_abs) {
  if (!(max_abs > 0)) {
    return absl::InvalidArgumentError(absl::StrCat("magnitude bound ", max_abs, " must be > 0"));
  }
  return CheckDecodable(t, max_abs);
}

absl::Status AccumulateChecked(const WireTensor& t, float weight, absl::Span<float> sum) {
  if (static_cast<int64_t>(sum.size()) != t.numel() || !std::isfinite(weight)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "accumulating '", t.name, "': sum of ", sum.size(), " for ", t.numel(),
        " elements at weight ", weight));
  }
  return DecodeChecked<Mode::kAccumulate>(t, weight, sum.data());
}

std::vector<float>& ErrorFeedback::Residual(const std::string& key, size_t n) {
  std::vector<float>& r = residuals_[key];
  if (r.size() != n) r.assign(n, 0.0f);
  return r;
}

namespace {
constexpr char kEfMagic[8] = {'F', 'E', 'D', 'G', 'E', 'E', 'F', '1'};
}  // namespace

absl::Status ErrorFeedback::Save(const std::string& path, Env* env) const {
  std::string body;
  PutU64(&body, residuals_.size());
  for (const auto& [key, values] : residuals_) {
    PutU64(&body, key.size());
    body += key;
    PutU64(&body, values.size());
    body.append(reinterpret_cast<const char*>(values.data()), 4 * values.size());
  }
  return WriteFileAtomically(env, path, SealFile(absl::string_view(kEfMagic, sizeof(kEfMagic)), body));
}

absl::Status ErrorFeedback::Load(const std::string& path, Env* env) {
  ASSIGN_OR_RETURN(const std::string file, env->ReadFile(path, int64_t{1} << 32));
  absl::string_view body;
  switch (OpenSealedFile(file, absl::string_view(kEfMagic, sizeof(kEfMagic)), &body)) {
    case SealCheck::kBadMagic:
      return absl::DataLossError(absl::StrCat(path, ": not an error-feedback file"));
    case SealCheck::kBadChecksum:
      return absl::DataLossError(absl::StrCat(path, ": checksum mismatch (truncated or corrupt)"));
    case SealCheck::kOk:
      break;
  }
  ByteReader in(body);
  uint64_t count = 0;
  std::map<std::string, std::vector<float>> loaded;
  if (!in.U64(&count)) return absl::DataLossError(absl::StrCat(path, ": truncated"));
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t key_size = 0, n = 0;
    absl::string_view key, raw;
    if (!in.U64(&key_size) || !in.Bytes(key_size, &key)) {
      return absl::DataLossError(absl::StrCat(path, ": truncated key"));
    }
    if (!in.U64(&n) || n > in.size() / 4 || !in.Bytes(4 * n, &raw)) {
      return absl::DataLossError(absl::StrCat(path, ": truncated values of '", key, "'"));
    }
    std::vector<float> values(n);
    std::memcpy(values.data(), raw.data(), raw.size());
    loaded[std::string(key)] = std::move(values);
  }
  if (!in.empty()) return absl::DataLossError(absl::StrCat(path, ": trailing bytes"));
  residuals_ = std::move(loaded);
  return absl::OkStatus();
}

}  // namespace fedge
