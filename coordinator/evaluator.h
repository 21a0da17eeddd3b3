#ifndef FEDGE_COORDINATOR_EVALUATOR_H_
#define FEDGE_COORDINATOR_EVALUATOR_H_

// The coordinator's view of the global model as a network: the initial
// model (the mixed-precision net calibrated at the pretrain precision on a
// slice of the training data), and after each round its held-out accuracy
// and its size at the learned bit-widths. LibTorch stays behind this header.
//
//   ASSIGN_OR_RETURN(ModelState initial, CalibratedModel(arch, data_dir, 8));
//   ASSIGN_OR_RETURN(auto evaluator, ModelEvaluator::Create(arch, data_dir, 10000));
//   ModelStats stats = evaluator->Evaluate(model);
//
// Not thread-safe.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/ops/metrics.h"
#include "coordinator/model_state.h"
#include "models/quant/quant_arch.h"

namespace fedge {

// Intra-op threads for calibration and evaluation (LibTorch defaults to 1
// here).
void SetComputeThreads(int threads);

absl::StatusOr<ModelState> CalibratedModel(const QuantArch& arch, const std::string& data_dir,
                                           int bits);

class ModelEvaluator {
 public:
  // `samples` of the Fashion-MNIST test split (0: size only, no accuracy).
  static absl::StatusOr<std::unique_ptr<ModelEvaluator>> Create(const QuantArch& arch,
                                                                const std::string& data_dir,
                                                                int64_t samples);
  ~ModelEvaluator();

  // Accuracy (-1 when there is no held-out set, or the model does not fit
  // the architecture) and size.
  ModelStats Evaluate(const ModelState& model);
  // Fails when `model` does not fit the architecture (a foreign checkpoint).
  absl::Status Check(const ModelState& model);

 private:
  struct Impl;
  explicit ModelEvaluator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_EVALUATOR_H_
