#include "common/update_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/bit_pack.h"
#include "common/file_util.h"
#include "common/half.h"
#include "common/status_macros.h"

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

// Calls sink(i, value) for every decoded element, in order.
template <typename Sink>
absl::Status ForEachDecoded(const WireTensor& t, Sink sink) {
  RETURN_IF_ERROR(ValidateTensor(t));
  const int64_t n = t.numel();
  const auto* bytes = reinterpret_cast<const uint8_t*>(t.payload.data());
  if (t.codec == Codec::kFp32) {
    for (int64_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, bytes + 4 * i, 4);
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("element ", i, " is not finite"));
      }
      sink(i, v);
    }
    return absl::OkStatus();
  }
  if (t.codec == Codec::kFp16) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = static_cast<uint16_t>(bytes[2 * i] | (bytes[2 * i + 1] << 8));
      if ((h & 0x7C00u) == 0x7C00u) {
        return absl::InvalidArgumentError(
            absl::StrCat("element ", i, " is not finite"));
      }
      sink(i, HalfToFloat(h));
    }
    return absl::OkStatus();
  }
  const int64_t per_slice = n / static_cast<int64_t>(t.slices.size());
  uint8_t codes[kDecodeChunk];
  size_t offset = 0;
  for (size_t s = 0; s < t.slices.size(); ++s) {
    const int bits = SliceBits(t, s);
    const SliceInfo& slice = t.slices[s];
    int64_t zero = 0, max_code = 0;
    float unit = 0;
    switch (t.codec) {
      case Codec::kQ:
        zero = Levels(bits);
        max_code = 2 * zero;
        unit = slice.step / static_cast<float>(zero);
        break;
      case Codec::kSignEf:
        max_code = 1;
        break;
      default:  // kMixed
        zero = MixedHalfRange(slice);
        max_code = 2 * zero;
        unit = slice.step;
        break;
    }
    for (int64_t begin = 0; begin < per_slice; begin += kDecodeChunk) {
      const int64_t count = std::min(kDecodeChunk, per_slice - begin);
      const size_t packed = PackedBytes(count, bits);
      RETURN_IF_ERROR(UnpackBits(absl::MakeConstSpan(bytes + offset, packed), bits,
                                 absl::MakeSpan(codes, count)));
      offset += packed;
      const int64_t base = static_cast<int64_t>(s) * per_slice + begin;
      for (int64_t i = 0; i < count; ++i) {
        if (codes[i] > max_code) {
          return absl::InvalidArgumentError(absl::StrCat(
              "slice ", s, ": code ", int{codes[i]}, " exceeds ", max_code));
        }
        const float v = t.codec == Codec::kSignEf
                            ? (codes[i] ? slice.step : -slice.step)
                            : static_cast<float>(codes[i] - zero) * unit;
        sink(base + i, v);
      }
    }
  }
  return absl::OkStatus();
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
  if (t.payload.size() != want) {
    return absl::InvalidArgumentError(absl::StrCat(
        CodecName(t.codec), " tensor '", t.name, "' of ", t.numel(),
        " elements needs ", want, " payload bytes, got ", t.payload.size()));
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
  const int64_t n = static_cast<int64_t>(values.size());
  RETURN_IF_ERROR(CheckSlices(*t, n));
  const int64_t per_slice = n / static_cast<int64_t>(slices.size());
  std::vector<uint8_t> codes(per_slice);
  for (size_t s = 0; s < slices.size(); ++s) {
    const SliceInfo& slice = slices[s];
    const int64_t half = MixedHalfRange(slice);
    const float* x = values.data() + s * per_slice;
    for (int64_t i = 0; i < per_slice; ++i) {
      const int64_t q = std::clamp<int64_t>(std::lround(x[i] / slice.step), -half, half);
      codes[i] = static_cast<uint8_t>(q + half);
    }
    RETURN_IF_ERROR(AppendPacked(codes, slice.bits, &t->payload));
  }
  return absl::OkStatus();
}

absl::Status DecodeTensor(const WireTensor& t, absl::Span<float> out) {
  if (static_cast<int64_t>(out.size()) != t.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "decoding '", t.name, "': output holds ", out.size(), " elements, tensor has ",
        t.numel()));
  }
  return ForEachDecoded(t, [&](int64_t i, float v) { out[i] = v; });
}

absl::Status AccumulateDecoded(const WireTensor& t, float weight,
                               absl::Span<float> sum) {
  if (static_cast<int64_t>(sum.size()) != t.numel()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "accumulating '", t.name, "': sum holds ", sum.size(), " elements, tensor has ",
        t.numel()));
  }
  return ForEachDecoded(t, [&](int64_t i, float v) { sum[i] += weight * v; });
}

std::vector<float>& ErrorFeedback::Residual(const std::string& key, size_t n) {
  std::vector<float>& r = residuals_[key];
  if (r.size() != n) r.assign(n, 0.0f);
  return r;
}

namespace {
constexpr char kEfMagic[8] = {'F', 'E', 'D', 'G', 'E', 'E', 'F', '1'};

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}

bool GetU64(absl::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(static_cast<uint8_t>((*in)[i])) << (8 * i);
  in->remove_prefix(8);
  return true;
}
}  // namespace

absl::Status ErrorFeedback::Save(const std::string& path) const {
  std::string body;
  PutU64(&body, residuals_.size());
  for (const auto& [key, values] : residuals_) {
    PutU64(&body, key.size());
    body += key;
    PutU64(&body, values.size());
    body.append(reinterpret_cast<const char*>(values.data()), 4 * values.size());
  }
  std::string file(kEfMagic, sizeof(kEfMagic));
  PutU64(&file, Fingerprint64(body));
  file += body;
  return WriteFileAtomically(path, file);
}

absl::Status ErrorFeedback::Load(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string file, ReadFileToString(path, int64_t{1} << 32));
  absl::string_view in(file);
  uint64_t fingerprint = 0, count = 0;
  if (in.size() < sizeof(kEfMagic) ||
      std::memcmp(in.data(), kEfMagic, sizeof(kEfMagic)) != 0) {
    return absl::DataLossError(absl::StrCat(path, ": not an error-feedback file"));
  }
  in.remove_prefix(sizeof(kEfMagic));
  if (!GetU64(&in, &fingerprint) || Fingerprint64(in) != fingerprint) {
    return absl::DataLossError(absl::StrCat(path, ": checksum mismatch (truncated or corrupt)"));
  }
  std::map<std::string, std::vector<float>> loaded;
  if (!GetU64(&in, &count)) return absl::DataLossError(absl::StrCat(path, ": truncated"));
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t key_size = 0, n = 0;
    if (!GetU64(&in, &key_size) || in.size() < key_size) {
      return absl::DataLossError(absl::StrCat(path, ": truncated key"));
    }
    std::string key(in.substr(0, key_size));
    in.remove_prefix(key_size);
    if (!GetU64(&in, &n) || n > in.size() / 4) {
      return absl::DataLossError(absl::StrCat(path, ": truncated values of '", key, "'"));
    }
    std::vector<float> values(n);
    std::memcpy(values.data(), in.data(), 4 * n);
    in.remove_prefix(4 * n);
    loaded[key] = std::move(values);
  }
  if (!in.empty()) return absl::DataLossError(absl::StrCat(path, ": trailing bytes"));
  residuals_ = std::move(loaded);
  return absl::OkStatus();
}

}  // namespace fedge
