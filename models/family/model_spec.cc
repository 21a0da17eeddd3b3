#include "models/family/model_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status/status_macros.h"
#include "models/memory/memory_model.h"

namespace fedge {

int ModelSpec::layer_count() const {
  return static_cast<int>(family == ModelFamily::kBinary ? binary.layers.size()
                                                         : quant.layers.size());
}

int64_t ModelSpec::TrainingMemory(int trainable_from, int batch) const {
  return family == ModelFamily::kBinary ? BinaryTrainingMemory(binary, trainable_from, batch)
                                        : QuantTrainingMemory(quant, trainable_from, batch);
}

std::string ModelSpec::Describe() const {
  const int64_t parameters =
      family == ModelFamily::kBinary ? binary.weight_count() : quant.weight_count();
  return absl::StrCat(family == ModelFamily::kBinary ? "binary network " : "mixed-precision network ",
                      name, ", ", input.channels, "x", input.height, "x", input.width, ", ",
                      num_classes, " classes, ", parameters, " weights");
}

absl::StatusOr<int> FashionMnistPadding(const ModelSpec& spec) {
  const InputShape& in = spec.input;
  if (in.channels != 1 || in.height != in.width || in.height < 28 || spec.num_classes != 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        spec.name, " takes ", in.channels, "x", in.height, "x", in.width, " images of ",
        spec.num_classes, " classes: Fashion-MNIST (1x28x28, 10 classes) does not fit it; give "
        "the agents their own data (--data)"));
  }
  return in.height == 28 ? 0 : in.height;
}

std::vector<std::string> KnownModelNames() {
  std::vector<std::string> names = KnownQuantArchNames();
  for (const std::string& n : KnownArchNames()) names.push_back(n);
  return names;
}

absl::StatusOr<ModelSpec> MakeModelSpec(absl::string_view name, std::optional<InputShape> input,
                                        int num_classes) {
  ModelSpec spec;
  spec.name = std::string(name);
  spec.num_classes = num_classes;
  const std::vector<std::string> binary_names = KnownArchNames();
  if (std::find(binary_names.begin(), binary_names.end(), name) != binary_names.end()) {
    spec.family = ModelFamily::kBinary;
    if (num_classes <= 0) spec.num_classes = num_classes = 10;
    spec.input = input.value_or(name == "mlp" ? InputShape{1, 28, 28} : InputShape{1, 32, 32});
    ASSIGN_OR_RETURN(spec.binary, MakeArch(name, spec.input, num_classes));
    return spec;
  }
  absl::StatusOr<QuantArch> quant = MakeQuantArch(name);
  if (!quant.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("unknown model '", name, "'; known: ",
                                                   absl::StrJoin(KnownModelNames(), ", ")));
  }
  spec.family = ModelFamily::kMixedPrecision;
  spec.quant = *std::move(quant);
  spec.input = {spec.quant.in_channels, spec.quant.in_height, spec.quant.in_width};
  if (input && (input->channels != spec.input.channels || input->height != spec.input.height ||
                input->width != spec.input.width)) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, " takes ", spec.input.channels, "x", spec.input.height, "x", spec.input.width,
        " images, not ", input->channels, "x", input->height, "x", input->width));
  }
  const int classes = spec.quant.layers.back().out_channels;
  if (num_classes <= 0) spec.num_classes = num_classes = classes;
  if (num_classes != classes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " has ", classes, " classes, not ", num_classes));
  }
  return spec;
}

}  // namespace fedge
