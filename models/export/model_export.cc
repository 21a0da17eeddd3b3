#include "models/export/model_export.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/codec/bit_pack.h"
#include "common/io/byte_io.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace fedge {
namespace {

constexpr char kMagic[8] = {'F', 'E', 'D', 'G', 'E', 'Q', 'M', '1'};
constexpr char kBinaryMagic[8] = {'F', 'E', 'D', 'G', 'E', 'B', 'N', '1'};
constexpr uint8_t kFloat = 0;
constexpr uint8_t kPacked = 1;
constexpr uint32_t kMaxDims = 8;
constexpr uint32_t kMaxTensors = 1 << 16;

void PutString(std::string* out, const std::string& s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  *out += s;
}

bool GetString(ByteReader* in, std::string* s, size_t max) {
  uint32_t n;
  absl::string_view bytes;
  if (!in->U32(&n) || n > max || !in->Bytes(n, &bytes)) return false;
  *s = std::string(bytes);
  return true;
}

// The per-slice view of d and xmax against a weight tensor (as the
// quantizer broadcasts them).
at::Tensor Broadcast(const at::Tensor& p, const at::Tensor& w) {
  if (p.numel() == 1) return p.reshape({});
  std::vector<int64_t> shape(w.dim(), 1);
  shape[0] = p.numel();
  return p.reshape(shape);
}

struct Record {
  std::string name;
  uint32_t layer = 0;
  std::vector<int64_t> shape;
  uint8_t kind = kFloat;
  std::vector<uint8_t> bits;  // kPacked: one per slice
  absl::string_view payload;
};

int64_t Numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// A record's header: name, layer, shape; then the caller's kind and payload.
void PutRecordHeader(std::string* body, const std::string& name, int layer,
                     at::IntArrayRef sizes) {
  PutString(body, name);
  PutU32(body, static_cast<uint32_t>(layer));
  PutU32(body, static_cast<uint32_t>(sizes.size()));
  for (int64_t d : sizes) PutU32(body, static_cast<uint32_t>(d));
}

// A float32 record's kind and payload.
void PutFloats(std::string* body, const at::Tensor& value) {
  body->push_back(static_cast<char>(kFloat));
  const at::Tensor f = value.to(at::kFloat).contiguous();
  body->append(reinterpret_cast<const char*>(f.data_ptr<float>()), 4 * f.numel());
}

// Record `k` of a model file, every field checked.
absl::StatusOr<Record> ReadRecord(ByteReader* reader, uint32_t k) {
  Record rec;
  uint32_t dims = 0;
  if (!GetString(reader, &rec.name, 1024) || !reader->U32(&rec.layer) || !reader->U32(&dims) ||
      dims > kMaxDims) {
    return absl::InvalidArgumentError(absl::StrCat("model file: bad record ", k));
  }
  for (uint32_t i = 0; i < dims; ++i) {
    uint32_t d;
    if (!reader->U32(&d) || d == 0 || d > (1u << 28)) {
      return absl::InvalidArgumentError(absl::StrCat("model file: bad shape of '", rec.name, "'"));
    }
    rec.shape.push_back(d);
  }
  const int64_t numel = Numel(rec.shape);
  if (numel > (int64_t{1} << 30) || !reader->U8(&rec.kind)) {
    return absl::InvalidArgumentError(absl::StrCat("model file: bad record '", rec.name, "'"));
  }
  if (rec.kind == kFloat) {
    if (!reader->Bytes(4 * numel, &rec.payload)) {
      return absl::InvalidArgumentError(absl::StrCat("model file: '", rec.name, "' is truncated"));
    }
  } else if (rec.kind == kPacked) {
    uint32_t slices = 0;
    if (!reader->U32(&slices) || slices == 0 || numel % slices != 0) {
      return absl::InvalidArgumentError(absl::StrCat("model file: bad slices of '", rec.name, "'"));
    }
    int64_t total_bits = 0;
    for (uint32_t s = 0; s < slices; ++s) {
      uint8_t b;
      if (!reader->U8(&b) || b < 1 || b > 8) {
        return absl::InvalidArgumentError(absl::StrCat("model file: bad bit-width in '", rec.name, "'"));
      }
      rec.bits.push_back(b);
      total_bits += int64_t{b} * (numel / slices);
    }
    if (!reader->Bytes((total_bits + 7) / 8, &rec.payload)) {
      return absl::InvalidArgumentError(absl::StrCat("model file: '", rec.name, "' is truncated"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("model file: unknown kind of '", rec.name, "'"));
  }
  return rec;
}

}  // namespace

absl::StatusOr<std::string> SerializeExportedModel(QuantNet& net, ExportReport* report) {
  std::string body;
  ExportReport r;
  RETURN_IF_ERROR(CallTorch("exporting the model", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    std::vector<NamedTensor> named = net.Named();
    std::map<std::string, at::Tensor> by_name;
    for (const NamedTensor& t : named) by_name[t.name] = t.tensor->detach().contiguous();
    const std::vector<LayerBits> bits = net.Bits();
    PutString(&body, net.arch().name);
    PutU32(&body, static_cast<uint32_t>(named.size()));
    int64_t weight_count = 0;
    double weight_bit_sum = 0;
    for (const NamedTensor& t : named) {
      const at::Tensor value = by_name[t.name];
      const size_t header_start = body.size();
      PutRecordHeader(&body, t.name, t.layer, value.sizes());
      const std::string prefix = net.arch().layers[t.layer].name + ".";
      const bool is_weight = t.name == prefix + "weight";
      if (!is_weight) {
        PutFloats(&body, value);
        r.other_bytes += static_cast<int64_t>(body.size() - header_start);
        continue;
      }
      // Codes exactly as the quantized forward pass computes them.
      const at::Tensor d = by_name.at(prefix + "w_step");
      const at::Tensor xmax = by_name.at(prefix + "w_range");
      const at::Tensor db = Broadcast(d, value), xb = Broadcast(xmax, value);
      const at::Tensor levels = (xmax / d).round().to(at::kInt).contiguous();
      // A binary slice (no levels) stores its signs: 1 for +xmax, 0 for -xmax.
      const at::Tensor binary = Broadcast(levels == 0, value);
      const at::Tensor codes =
          at::where(binary, (value >= 0).to(at::kFloat),
                    (at::max(at::min(value, xb), -xb) / db).round_())
              .to(at::kInt)
              .contiguous();
      const std::vector<int>& slice_bits = bits[t.layer].weight_bits;
      const int64_t slices = static_cast<int64_t>(slice_bits.size());
      if (value.numel() % slices != 0 || levels.numel() != slices) {
        return absl::InternalError(absl::StrCat(t.name, ": ", slices, " slices do not divide ",
                                                value.numel(), " weights"));
      }
      body.push_back(static_cast<char>(kPacked));
      PutU32(&body, static_cast<uint32_t>(slices));
      for (int b : slice_bits) body.push_back(static_cast<char>(b));
      r.other_bytes += static_cast<int64_t>(body.size() - header_start);
      const int64_t per_slice = value.numel() / slices;
      const int* c = codes.data_ptr<int>();
      const int* n = levels.data_ptr<int>();
      // One stream across the slices, no padding between them.
      std::string packed;
      BitWriter writer(&packed);
      for (int64_t s = 0; s < slices; ++s) {
        const int b = slice_bits[s];
        weight_bit_sum += static_cast<double>(b) * per_slice;
        for (int64_t i = s * per_slice; i < (s + 1) * per_slice; ++i) {
          // 0 .. 2n; a binary slice's sign bit as it is.
          const absl::Status put = writer.Put(static_cast<uint32_t>(c[i] + n[s]), b);
          if (!put.ok()) return absl::InternalError(absl::StrCat(t.name, ": ", put.message()));
        }
      }
      writer.Flush();
      body += packed;
      r.packed_weight_bytes += static_cast<int64_t>(packed.size());
      weight_count += value.numel();
    }
    r.mean_weight_bits = weight_count > 0 ? weight_bit_sum / weight_count : 0;
    // The quantized weights' share of the size model: the classifier's bias,
    // which the reference accounting counts with the weights, is stored
    // among the float32 tensors.
    r.size_model_weight_bytes = (net.Size().weight_kb - net.arch().bias_kb()) * 1000;
    return absl::OkStatus();
  }));
  const std::string file = SealFile(absl::string_view(kMagic, sizeof(kMagic)), body);
  r.file_bytes = static_cast<int64_t>(file.size());
  r.other_bytes += r.file_bytes - static_cast<int64_t>(body.size());  // magic and fingerprint
  r.other_bytes += 8;  // the arch name's length prefix and the tensor count
  r.other_bytes += static_cast<int64_t>(net.arch().name.size());
  if (report != nullptr) *report = r;
  return file;
}

absl::Status ExportModel(QuantNet& net, const std::string& path, ExportReport* report) {
  ASSIGN_OR_RETURN(const std::string file, SerializeExportedModel(net, report));
  return WriteFileAtomically(path, file);
}

absl::StatusOr<std::unique_ptr<QuantNet>> ParseExportedModel(const std::string& bytes) {
  absl::string_view in;
  switch (OpenSealedFile(bytes, absl::string_view(kMagic, sizeof(kMagic)), &in)) {
    case SealCheck::kBadMagic:
      return absl::InvalidArgumentError("not a fedge model file (bad magic)");
    case SealCheck::kBadChecksum:
      return absl::DataLossError("model file checksum mismatch (truncated or corrupt)");
    case SealCheck::kOk:
      break;
  }
  ByteReader reader(in);
  std::string arch_name;
  uint32_t count = 0;
  if (!GetString(&reader, &arch_name, 256) || !reader.U32(&count) || count > kMaxTensors) {
    return absl::InvalidArgumentError("model file: bad header");
  }
  ASSIGN_OR_RETURN(const QuantArch arch, MakeQuantArch(arch_name));
  std::map<std::string, Record> records;
  for (uint32_t k = 0; k < count; ++k) {
    ASSIGN_OR_RETURN(const Record rec, ReadRecord(&reader, k));
    if (!records.emplace(rec.name, rec).second) {
      return absl::InvalidArgumentError(absl::StrCat("model file: '", rec.name, "' appears twice"));
    }
  }
  if (!reader.empty()) return absl::InvalidArgumentError("model file: trailing bytes");

  auto net = std::make_unique<QuantNet>(arch, QuantNetOptions());
  RETURN_IF_ERROR(CallTorch("loading the model", [&]() -> absl::Status {
    at::NoGradGuard no_grad;
    std::vector<NamedTensor> named = net->Named();
    if (named.size() != records.size()) {
      return absl::InvalidArgumentError(absl::StrCat("model file holds ", records.size(),
                                                     " tensors, ", arch_name, " has ", named.size()));
    }
    auto float_of = [&](const std::string& name) -> absl::StatusOr<at::Tensor> {
      auto it = records.find(name);
      if (it == records.end() || it->second.kind != kFloat) {
        return absl::InvalidArgumentError(absl::StrCat("model file: no float tensor '", name, "'"));
      }
      at::Tensor t = at::empty(it->second.shape, at::kFloat);
      std::memcpy(t.data_ptr<float>(), it->second.payload.data(), it->second.payload.size());
      if (!at::isfinite(t).all().item<bool>()) {
        return absl::InvalidArgumentError(absl::StrCat("model file: '", name, "' is not finite"));
      }
      return t;
    };
    for (NamedTensor& t : named) {
      auto it = records.find(t.name);
      if (it == records.end()) {
        return absl::InvalidArgumentError(absl::StrCat("model file lacks '", t.name, "'"));
      }
      const Record& rec = it->second;
      if (rec.layer != static_cast<uint32_t>(t.layer) || at::IntArrayRef(rec.shape) != t.tensor->sizes()) {
        return absl::InvalidArgumentError(absl::StrCat("model file: '", t.name,
                                                       "' does not fit ", arch_name));
      }
      if (rec.kind == kFloat) {
        ASSIGN_OR_RETURN(at::Tensor value, float_of(t.name));
        t.tensor->copy_(value);
        continue;
      }
      const std::string prefix = arch.layers[t.layer].name + ".";
      ASSIGN_OR_RETURN(const at::Tensor d, float_of(prefix + "w_step"));
      ASSIGN_OR_RETURN(const at::Tensor xmax, float_of(prefix + "w_range"));
      if (d.numel() != static_cast<int64_t>(rec.bits.size()) || !(d > 0).all().item<bool>()) {
        return absl::InvalidArgumentError(absl::StrCat("model file: steps of '", t.name, "' do not fit"));
      }
      const at::Tensor levels = (xmax / d).round().to(at::kInt).contiguous();
      const int64_t slices = d.numel(), per_slice = Numel(rec.shape) / slices;
      at::Tensor codes = at::empty(rec.shape, at::kFloat);
      float* out = codes.data_ptr<float>();
      BitReader reader(absl::MakeConstSpan(
          reinterpret_cast<const uint8_t*>(rec.payload.data()), rec.payload.size()));
      for (int64_t s = 0; s < slices; ++s) {
        const int b = rec.bits[s];
        const int n = levels.data_ptr<int>()[s];
        // A binary slice: one bit per weight, +-xmax.
        const bool binary = n == 0;
        if (binary && b != 1) {
          return absl::InvalidArgumentError(absl::StrCat(
              "model file: binary slice ", s, " of '", t.name, "' has ", b, " bits, not 1"));
        }
        const int max_code = binary ? 1 : 2 * n;
        for (int64_t i = s * per_slice; i < (s + 1) * per_slice; ++i) {
          uint32_t u = 0;
          if (!reader.Get(b, &u) || static_cast<int>(u) > max_code) {
            return absl::InvalidArgumentError(absl::StrCat("model file: code ", u, " of '", t.name,
                                                           "' is out of its range"));
          }
          out[i] = binary ? 2.0f * static_cast<float>(u) - 1 : static_cast<float>(static_cast<int>(u) - n);
        }
      }
      const at::Tensor unit = at::where(levels == 0, xmax, d);
      t.tensor->copy_(codes.mul_(Broadcast(unit, codes)));
    }
    return absl::OkStatus();
  }));
  return net;
}

absl::StatusOr<std::unique_ptr<QuantNet>> LoadExportedModel(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(path, int64_t{1} << 31));
  absl::StatusOr<std::unique_ptr<QuantNet>> net = ParseExportedModel(bytes);
  if (!net.ok()) return Annotate(net.status(), path);
  return net;
}

bool IsExportedBinary(const std::string& bytes) {
  return bytes.size() >= sizeof(kBinaryMagic) &&
         std::memcmp(bytes.data(), kBinaryMagic, sizeof(kBinaryMagic)) == 0;
}

absl::StatusOr<std::string> SerializeExportedBinary(const std::vector<NamedTensor>& named,
                                                    const ArchSpec& arch, ExportReport* report) {
  std::string body;
  ExportReport r;
  PutString(&body, arch.name);
  for (int v : {arch.input.channels, arch.input.height, arch.input.width, arch.num_classes}) {
    PutU32(&body, static_cast<uint32_t>(v));
  }
  PutU32(&body, static_cast<uint32_t>(named.size()));
  r.other_bytes = static_cast<int64_t>(body.size());
  int64_t weight_count = 0;
  RETURN_IF_ERROR(CallTorch("exporting the binary network", [&] {
    at::NoGradGuard no_grad;
    for (const NamedTensor& t : named) {
      const at::Tensor value = t.tensor->detach().to(at::kFloat).contiguous();
      const size_t header_start = body.size();
      PutRecordHeader(&body, t.name, t.layer, value.sizes());
      const bool weight = t.name == arch.layers[t.layer].name + ".weight";
      if (!weight) {
        PutFloats(&body, value);
        r.other_bytes += static_cast<int64_t>(body.size() - header_start);
        continue;
      }
      body.push_back(static_cast<char>(kPacked));
      PutU32(&body, 1);
      body.push_back(1);
      r.other_bytes += static_cast<int64_t>(body.size() - header_start);
      std::string packed;
      BitWriter writer(&packed);
      const float* w = value.data_ptr<float>();
      for (int64_t i = 0; i < value.numel(); ++i) (void)writer.Put(w[i] >= 0 ? 1 : 0, 1);
      writer.Flush();
      body += packed;
      r.packed_weight_bytes += static_cast<int64_t>(packed.size());
      weight_count += value.numel();
    }
    return absl::OkStatus();
  }));
  const std::string file = SealFile(absl::string_view(kBinaryMagic, sizeof(kBinaryMagic)), body);
  r.file_bytes = static_cast<int64_t>(file.size());
  r.other_bytes += r.file_bytes - static_cast<int64_t>(body.size());
  r.size_model_weight_bytes = static_cast<double>(arch.weight_count()) / 8;
  r.mean_weight_bits = weight_count > 0 ? 1 : 0;
  if (report != nullptr) *report = r;
  return file;
}

absl::StatusOr<ExportedBinary> ParseExportedBinary(const std::string& bytes) {
  absl::string_view in;
  switch (OpenSealedFile(bytes, absl::string_view(kBinaryMagic, sizeof(kBinaryMagic)), &in)) {
    case SealCheck::kBadMagic:
      return absl::InvalidArgumentError("not a fedge binary network file (bad magic)");
    case SealCheck::kBadChecksum:
      return absl::DataLossError("model file checksum mismatch (truncated or corrupt)");
    case SealCheck::kOk:
      break;
  }
  ByteReader reader(in);
  ExportedBinary out;
  uint32_t c = 0, h = 0, w = 0, classes = 0, count = 0;
  if (!GetString(&reader, &out.arch, 256) || !reader.U32(&c) || !reader.U32(&h) ||
      !reader.U32(&w) || !reader.U32(&classes) || !reader.U32(&count) || c == 0 || c > 64 ||
      h == 0 || h > 4096 || w == 0 || w > 4096 || classes < 2 || classes > 100000 ||
      count > kMaxTensors) {
    return absl::InvalidArgumentError("model file: bad header");
  }
  out.input = {static_cast<int>(c), static_cast<int>(h), static_cast<int>(w)};
  out.num_classes = static_cast<int>(classes);
  for (uint32_t k = 0; k < count; ++k) {
    ASSIGN_OR_RETURN(const Record rec, ReadRecord(&reader, k));
    ModelShard shard;
    shard.name = rec.name;
    shard.layer = static_cast<int>(rec.layer);
    shard.shape.assign(rec.shape.begin(), rec.shape.end());
    shard.values.resize(Numel(rec.shape));
    if (rec.kind == kFloat) {
      std::memcpy(shard.values.data(), rec.payload.data(), rec.payload.size());
      for (float v : shard.values) {
        if (!std::isfinite(v)) {
          return absl::InvalidArgumentError(absl::StrCat("model file: '", rec.name, "' is not finite"));
        }
      }
    } else {
      if (rec.bits.size() != 1 || rec.bits[0] != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("model file: '", rec.name, "' is not 1-bit signs"));
      }
      BitReader bits_in(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(rec.payload.data()),
                                            rec.payload.size()));
      for (float& v : shard.values) {
        uint32_t u = 0;
        (void)bits_in.Get(1, &u);
        v = u != 0 ? 1.0f : -1.0f;
      }
    }
    out.shards.push_back(std::move(shard));
  }
  if (!reader.empty()) return absl::InvalidArgumentError("model file: trailing bytes");
  return out;
}

}  // namespace fedge
