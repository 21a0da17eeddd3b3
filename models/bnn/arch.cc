#include "models/bnn/arch.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace fedge {

int64_t ArchSpec::weight_count() const {
  int64_t total = 0;
  for (const LayerSpec& layer : layers) total += layer.weight_count();
  return total;
}

int ArchSpec::first_weight_layer() const {
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i].has_weights) return static_cast<int>(i);
  }
  return -1;
}

namespace {

// Appends layers one at a time, tracking the running shape.
class ArchBuilder {
 public:
  explicit ArchBuilder(ArchSpec* spec)
      : spec_(spec),
        channels_(spec->input.channels),
        height_(spec->input.height),
        width_(spec->input.width) {}

  void Conv(int out_channels, int kernel, int padding) {
    LayerSpec layer = Next(LayerKind::kConv, "conv");
    layer.out_channels = out_channels;
    layer.kernel = kernel;
    layer.padding = padding;
    layer.out_height = height_ + 2 * padding - kernel + 1;
    layer.out_width = width_ + 2 * padding - kernel + 1;
    Push(layer);
  }

  void Pool() {
    LayerSpec layer = Next(LayerKind::kMaxPool, "pool");
    layer.has_weights = false;
    layer.out_channels = channels_;
    layer.kernel = 2;
    layer.out_height = height_ / 2;
    layer.out_width = width_ / 2;
    Push(layer);
  }

  void Linear(int out_features) {
    LayerSpec layer = Next(LayerKind::kLinear, "fc");
    layer.in_channels = channels_ * height_ * width_;
    layer.in_height = layer.in_width = 1;
    layer.out_channels = out_features;
    Push(layer);
  }

  absl::Status status() const { return status_; }

 private:
  LayerSpec Next(LayerKind kind, const char* prefix) {
    LayerSpec layer;
    layer.kind = kind;
    layer.name = absl::StrCat(prefix, ++count_[static_cast<int>(kind)]);
    layer.in_channels = channels_;
    layer.in_height = height_;
    layer.in_width = width_;
    return layer;
  }

  void Push(const LayerSpec& layer) {
    if (!status_.ok()) return;
    if (layer.out_height < 1 || layer.out_width < 1) {
      status_ = absl::InvalidArgumentError(absl::StrCat(
          spec_->name, ": input ", spec_->input.channels, "x",
          spec_->input.height, "x", spec_->input.width, " is too small: ",
          layer.name, " would output ", layer.out_height, "x",
          layer.out_width));
      return;
    }
    channels_ = layer.out_channels;
    height_ = layer.out_height;
    width_ = layer.out_width;
    spec_->layers.push_back(layer);
  }

  ArchSpec* spec_;
  int channels_, height_, width_;
  int count_[3] = {0, 0, 0};
  absl::Status status_;
};

}  // namespace

std::vector<std::string> KnownArchNames() { return {"mlp", "cnv", "binarynet"}; }

absl::StatusOr<ArchSpec> MakeArch(absl::string_view name, InputShape input,
                                  int num_classes) {
  if (input.channels < 1 || input.height < 1 || input.width < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input shape ", input.channels, "x", input.height, "x", input.width,
        " must be positive"));
  }
  if (num_classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("need at least 2 classes, got ", num_classes));
  }
  ArchSpec spec;
  spec.name = std::string(name);
  spec.input = input;
  spec.num_classes = num_classes;
  ArchBuilder b(&spec);
  if (name == "mlp") {
    for (int i = 0; i < 4; ++i) b.Linear(256);
  } else if (name == "cnv") {
    b.Conv(64, 3, 0);
    b.Conv(64, 3, 0);
    b.Pool();
    b.Conv(128, 3, 0);
    b.Conv(128, 3, 0);
    b.Pool();
    b.Conv(256, 3, 0);
    b.Conv(256, 3, 0);
    b.Linear(512);
    b.Linear(512);
  } else if (name == "binarynet") {
    b.Conv(128, 3, 1);
    b.Conv(128, 3, 1);
    b.Pool();
    b.Conv(256, 3, 1);
    b.Conv(256, 3, 1);
    b.Pool();
    b.Conv(512, 3, 1);
    b.Conv(512, 3, 1);
    b.Pool();
    b.Linear(1024);
    b.Linear(1024);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown architecture '", name,
                     "'; known: mlp, cnv, binarynet"));
  }
  b.Linear(num_classes);
  if (!b.status().ok()) return b.status();
  return spec;
}

absl::StatusOr<InputShape> ParseInputShape(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, 'x');
  InputShape shape;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &shape.channels) ||
      !absl::SimpleAtoi(parts[1], &shape.height) ||
      !absl::SimpleAtoi(parts[2], &shape.width) || shape.channels < 1 ||
      shape.height < 1 || shape.width < 1 || shape.channels > 4096 ||
      shape.height > 4096 || shape.width > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input shape '", text, "' is not CxHxW with positive sizes, e.g. 1x28x28"));
  }
  return shape;
}

}  // namespace fedge
