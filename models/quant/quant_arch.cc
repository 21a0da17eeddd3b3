#include "models/quant/quant_arch.h"

#include "absl/strings/str_cat.h"

namespace fedge {

int64_t QuantArch::weight_count() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.weight_count();
  return n;
}

int64_t QuantArch::activation_elements() const {
  int64_t n = 0;
  for (const auto& l : layers) n += l.input_elements();
  return n;
}

int64_t QuantArch::counted_activation_elements() const {
  int64_t n = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (counts_input(i)) n += layers[i].input_elements();
  }
  return n;
}

int64_t QuantArch::bias_count() const {
  if (accounting != SizeAccounting::kReference || layers.empty()) return 0;
  return layers.back().out_channels;
}

double QuantArch::WeightBudgetKb(double bits) const {
  return bits * static_cast<double>(weight_count()) / 8000.0 + bias_kb();
}

double QuantArch::ActivationBudgetKb(double bits) const {
  return bits * static_cast<double>(counted_activation_elements()) / 8000.0;
}

const char* SizeAccountingName(SizeAccounting accounting) {
  return accounting == SizeAccounting::kReference ? "reference" : "project";
}

absl::StatusOr<SizeAccounting> ParseSizeAccounting(absl::string_view name) {
  if (name == "reference") return SizeAccounting::kReference;
  if (name == "project") return SizeAccounting::kProject;
  return absl::InvalidArgumentError(
      absl::StrCat("size accounting '", name, "': expected reference or project"));
}

namespace {

class Builder {
 public:
  Builder(QuantArch* arch) : arch_(arch), c_(arch->in_channels), h_(arch->in_height),
                             w_(arch->in_width) {}

  void Conv(const std::string& name, int out, int kernel, int stride) {
    Add(name, QuantLayerKind::kConv, out, kernel, stride);
  }
  void Depthwise(const std::string& name, int kernel, int stride) {
    Add(name, QuantLayerKind::kDepthwise, c_, kernel, stride);
  }
  void Linear(const std::string& name, int out) {
    QuantLayerSpec l;
    l.name = name;
    l.kind = QuantLayerKind::kLinear;
    l.in_channels = c_ * h_ * w_;
    l.out_channels = out;
    arch_->layers.push_back(l);
    c_ = out;
    h_ = w_ = 1;
  }
  // Spatial reductions without weights (max or average pools).
  void Pool2() {
    arch_->layers.back().pool_after = true;
    h_ /= 2;
    w_ /= 2;
  }
  void GlobalPool() { h_ = w_ = 1; }
  int channels() const { return c_; }
  // Rewinds the running shape, for a branch (a residual downsample) that
  // reads the block's input.
  void SetShape(int c, int h, int w) { c_ = c; h_ = h; w_ = w; }
  int height() const { return h_; }
  int width() const { return w_; }

 private:
  void Add(const std::string& name, QuantLayerKind kind, int out, int kernel, int stride) {
    QuantLayerSpec l;
    l.name = name;
    l.kind = kind;
    l.in_channels = c_;
    if (kind == QuantLayerKind::kDepthwise) l.groups = c_;
    l.out_channels = out;
    l.kernel = kernel;
    l.stride = stride;
    l.padding = kernel / 2;
    l.in_height = h_;
    l.in_width = w_;
    l.out_height = (h_ + 2 * l.padding - kernel) / stride + 1;
    l.out_width = (w_ + 2 * l.padding - kernel) / stride + 1;
    arch_->layers.push_back(l);
    c_ = out;
    h_ = l.out_height;
    w_ = l.out_width;
  }

  QuantArch* arch_;
  int c_, h_, w_;
};

void MobileNetV2(Builder& b) {
  b.Conv("stem", 32, 3, 2);
  struct Stage { int t, c, n, s; };
  const Stage stages[] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                          {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  int block = 0;
  for (const Stage& s : stages) {
    for (int i = 0; i < s.n; ++i) {
      const std::string p = absl::StrCat("block", ++block, ".");
      if (s.t != 1) b.Conv(p + "expand", b.channels() * s.t, 1, 1);
      b.Depthwise(p + "dw", 3, i == 0 ? s.s : 1);
      b.Conv(p + "project", s.c, 1, 1);
    }
  }
  b.Conv("head", 1280, 1, 1);
  b.GlobalPool();
  b.Linear("fc", 1000);
}

void EfficientNetLite0(Builder& b) {
  b.Conv("stem", 32, 3, 2);
  struct Stage { int t, k, s, c, n; };
  const Stage stages[] = {{1, 3, 1, 16, 1}, {6, 3, 2, 24, 2},  {6, 5, 2, 40, 2},
                          {6, 3, 2, 80, 3}, {6, 5, 1, 112, 3}, {6, 5, 2, 192, 4},
                          {6, 3, 1, 320, 1}};
  int block = 0;
  for (const Stage& s : stages) {
    for (int i = 0; i < s.n; ++i) {
      const std::string p = absl::StrCat("block", ++block, ".");
      if (s.t != 1) b.Conv(p + "expand", b.channels() * s.t, 1, 1);
      b.Depthwise(p + "dw", s.k, i == 0 ? s.s : 1);
      b.Conv(p + "project", s.c, 1, 1);
    }
  }
  b.Conv("head", 1280, 1, 1);
  b.GlobalPool();
  b.Linear("fc", 1000);
}

void ResNet18(Builder& b) {
  b.Conv("stem", 64, 7, 2);
  b.SetShape(64, b.height() / 2, b.width() / 2);  // 3x3 max pool, stride 2
  const int widths[] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    for (int block = 0; block < 2; ++block) {
      const std::string p = absl::StrCat("layer", stage + 1, ".", block, ".");
      const int stride = stage > 0 && block == 0 ? 2 : 1;
      const int in_c = b.channels(), in_h = b.height(), in_w = b.width();
      b.Conv(p + "conv1", widths[stage], 3, stride);
      b.Conv(p + "conv2", widths[stage], 3, 1);
      if (stride != 1 || in_c != widths[stage]) {
        const int out_h = b.height(), out_w = b.width();
        b.SetShape(in_c, in_h, in_w);
        b.Conv(p + "downsample", widths[stage], 1, stride);
        b.SetShape(widths[stage], out_h, out_w);
      }
    }
  }
  b.GlobalPool();
  b.Linear("fc", 1000);
}

}  // namespace

std::vector<std::string> KnownQuantArchNames() {
  return {"fmnist-cnn", "fmnist-mlp", "mobilenetv2", "efficientnet-lite0", "resnet18"};
}

absl::StatusOr<QuantArch> MakeQuantArch(absl::string_view name) {
  QuantArch arch;
  arch.name = std::string(name);
  if (name == "fmnist-cnn" || name == "fmnist-mlp") {
    arch.in_channels = 1;
    arch.in_height = arch.in_width = 28;
  } else {
    arch.in_channels = 3;
    arch.in_height = arch.in_width = 224;
  }
  Builder b(&arch);
  if (name == "fmnist-cnn") {
    b.Conv("conv1", 32, 3, 1);
    b.Pool2();
    b.Conv("conv2", 64, 3, 1);
    b.Pool2();
    b.Linear("fc1", 128);
    b.Linear("fc2", 10);
  } else if (name == "fmnist-mlp") {
    b.Linear("fc1", 256);
    b.Linear("fc2", 10);
  } else if (name == "mobilenetv2") {
    MobileNetV2(b);
  } else if (name == "efficientnet-lite0") {
    EfficientNetLite0(b);
  } else if (name == "resnet18") {
    ResNet18(b);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown architecture '", name,
        "'; known: fmnist-cnn, fmnist-mlp, mobilenetv2, efficientnet-lite0, resnet18"));
  }
  return arch;
}

}  // namespace fedge
