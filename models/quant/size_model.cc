#include "models/quant/size_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fedge {

absl::StatusOr<SizeReport> ComputeSize(const QuantArch& arch,
                                       const std::vector<LayerBits>& bits) {
  if (bits.size() != arch.layers.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bit-widths for ", bits.size(), " layers, architecture has ", arch.layers.size()));
  }
  SizeReport report;
  double weight_bits = 0, act_bits = 0;
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const QuantLayerSpec& layer = arch.layers[i];
    if (static_cast<int>(bits[i].weight_bits.size()) != layer.slices()) {
      return absl::InvalidArgumentError(absl::StrCat(
          layer.name, ": ", bits[i].weight_bits.size(), " slice bit-widths, layer has ",
          layer.slices(), " slices"));
    }
    const int64_t per_slice = layer.weight_count() / layer.slices();
    double layer_bits = 0;
    for (int b : bits[i].weight_bits) layer_bits += static_cast<double>(per_slice) * b;
    const double quantized_bits = layer_bits;
    if (i + 1 == arch.layers.size()) layer_bits += arch.bias_kb() * 8000;
    const double input_bits =
        arch.counts_input(i)
            ? static_cast<double>(layer.input_elements()) * bits[i].activation_bits
            : 0.0;
    LayerSize size;
    size.name = layer.name;
    size.weight_kb = layer_bits / 8000;
    size.activation_kb = input_bits / 8000;
    size.mean_weight_bits = quantized_bits / layer.weight_count();
    size.activation_bits = bits[i].activation_bits;
    report.weight_kb += size.weight_kb;
    report.activation_kb += size.activation_kb;
    weight_bits += layer_bits;
    act_bits += input_bits;
    report.layers.push_back(size);
  }
  report.mean_weight_bits =
      weight_bits / std::max<int64_t>(1, arch.weight_count() + arch.bias_count());
  report.mean_activation_bits =
      act_bits / std::max<int64_t>(1, arch.counted_activation_elements());
  return report;
}

SizeReport UniformSize(const QuantArch& arch, int weight_bits, int activation_bits) {
  std::vector<LayerBits> bits;
  for (const QuantLayerSpec& layer : arch.layers) {
    bits.push_back({std::vector<int>(layer.slices(), weight_bits), activation_bits});
  }
  return *ComputeSize(arch, bits);
}

double PenaltyRamp(int64_t step, int64_t phase_steps) {
  const double half = std::max<double>(1.0, phase_steps / 2.0);
  return 0.01 + 0.99 * std::min(1.0, static_cast<double>(step) / half);
}

bool WithinBudget(const SizeReport& size, const Budget& budget) {
  constexpr double kRounding = 1 + 1e-9;
  return (budget.weight_kb <= 0 || size.weight_kb <= budget.weight_kb * kRounding) &&
         (budget.activation_kb <= 0 || size.activation_kb <= budget.activation_kb * kRounding);
}

double BudgetExcess(double kb, double budget_kb, PenaltyForm form) {
  if (budget_kb <= 0) return 0;
  const double over = form == PenaltyForm::kRelative ? kb / budget_kb - 1 : kb - budget_kb;
  return std::max(0.0, over);
}

double SizePenalty(double weight_kb, double activation_kb, const Budget& budget,
                   double ramp) {
  const double w = BudgetExcess(weight_kb, budget.weight_kb, budget.form);
  const double a = BudgetExcess(activation_kb, budget.activation_kb, budget.form);
  return ramp * (budget.lambda_w * w * w + budget.lambda_a * a * a);
}

double DefaultLambda(PenaltyForm form) { return form == PenaltyForm::kRelative ? 1.0 : 1e-4; }

const char* PenaltyFormName(PenaltyForm form) {
  return form == PenaltyForm::kRelative ? "relative" : "absolute";
}

absl::StatusOr<PenaltyForm> ParsePenaltyForm(absl::string_view name) {
  if (name == "relative") return PenaltyForm::kRelative;
  if (name == "absolute") return PenaltyForm::kAbsolute;
  return absl::InvalidArgumentError(
      absl::StrCat("size penalty '", name, "': expected relative or absolute"));
}

std::string FormatSizeReport(const QuantArch& arch, const SizeReport& report) {
  std::string out = absl::StrFormat("%-22s %-10s %10s %9s %11s %7s %11s\n", "layer", "kind",
                                    "weights", "w bits", "weights kB", "a bits", "acts kB");
  for (size_t i = 0; i < arch.layers.size(); ++i) {
    const QuantLayerSpec& l = arch.layers[i];
    const LayerSize& s = report.layers[i];
    const char* kind = l.kind == QuantLayerKind::kConv
                           ? "conv"
                           : l.kind == QuantLayerKind::kDepthwise ? "depthwise" : "linear";
    absl::StrAppendFormat(&out, "%-22s %-10s %10d %9.2f %11.2f %7d %11.2f\n", l.name, kind,
                          l.weight_count(), s.mean_weight_bits, s.weight_kb,
                          s.activation_bits, s.activation_kb);
  }
  absl::StrAppendFormat(&out,
                        "total (%s accounting): %lld weights, %lld biases, %lld activations per "
                        "sample; W = %.2f kB (%.2f bits), A = %.2f kB (%.2f bits), W + A = %.2f kB\n",
                        SizeAccountingName(arch.accounting),
                        static_cast<long long>(arch.weight_count()),
                        static_cast<long long>(arch.bias_count()),
                        static_cast<long long>(arch.counted_activation_elements()), report.weight_kb,
                        report.mean_weight_bits, report.activation_kb,
                        report.mean_activation_bits, report.total_kb());
  return out;
}

}  // namespace fedge
