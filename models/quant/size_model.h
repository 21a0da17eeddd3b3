#ifndef FEDGE_MODELS_SIZE_MODEL_H_
#define FEDGE_MODELS_SIZE_MODEL_H_

// The size model and penalty of design 4.1, on plain numbers:
//   W = sum_layers sum_c N_c b_c / 8000 kB (+ the classifier's float bias,
//       reference accounting)
//   A = sum over counted activation tensors of (elements per sample) b_a / 8000 kB
//       (the input image is not counted under the reference accounting)
//   penalty = s(t) [lambda_w e(W, W*)^2 + lambda_a e(A, A*)^2]
// with s(t) ramping linearly from 0.01 to 1 over the first half of the phase
// and the excess e either relative, relu(W/W* - 1) (the default: the same
// pull whatever the network's size), or absolute in kB, relu(W - W*) (the
// seed's form: negligible for a 10 kB activation budget, enormous for an
// ImageNet network).
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "models/quant/quant_arch.h"

namespace fedge {

struct LayerBits {
  std::vector<int> weight_bits;  // one per slice
  int activation_bits = 8;       // of the layer's input
};

struct LayerSize {
  std::string name;
  double weight_kb = 0;
  double activation_kb = 0;
  double mean_weight_bits = 0;
  int activation_bits = 0;
};

struct SizeReport {
  std::vector<LayerSize> layers;
  double weight_kb = 0;
  double activation_kb = 0;
  double total_kb() const { return weight_kb + activation_kb; }
  // Averages weighted by element counts.
  double mean_weight_bits = 0;
  double mean_activation_bits = 0;
};

// Fails if `bits` does not give one entry per layer and per slice.
absl::StatusOr<SizeReport> ComputeSize(const QuantArch& arch,
                                       const std::vector<LayerBits>& bits);
SizeReport UniformSize(const QuantArch& arch, int weight_bits, int activation_bits);

// s(t) for step t of a phase of `phase_steps` steps.
double PenaltyRamp(int64_t step, int64_t phase_steps);

enum class PenaltyForm : uint8_t { kRelative = 0, kAbsolute = 1 };

// The form's usual lambda: 1 for the relative excess, 1e-4 for kB.
double DefaultLambda(PenaltyForm form);
const char* PenaltyFormName(PenaltyForm form);
// "relative" or "absolute".
absl::StatusOr<PenaltyForm> ParsePenaltyForm(absl::string_view name);

struct Budget {
  double weight_kb = 0;      // W*; 0 disables the term
  double activation_kb = 0;  // A*; 0 disables the term
  double lambda_w = 1.0;
  double lambda_a = 1.0;
  PenaltyForm form = PenaltyForm::kRelative;
};

// W <= W* and A <= A* (a term with budget 0 always holds), within rounding:
// the uniform b-bit model meets a budget of b bits.
bool WithinBudget(const SizeReport& size, const Budget& budget);

// relu(kb / budget - 1) or relu(kb - budget); 0 without a budget.
double BudgetExcess(double kb, double budget_kb, PenaltyForm form);
double SizePenalty(double weight_kb, double activation_kb, const Budget& budget,
                   double ramp);

// Prints per-layer bits and sizes as a table.
std::string FormatSizeReport(const QuantArch& arch, const SizeReport& report);

}  // namespace fedge

#endif  // FEDGE_MODELS_SIZE_MODEL_H_
