#ifndef FEDGE_COORDINATOR_EVALUATOR_H_
#define FEDGE_COORDINATOR_EVALUATOR_H_

// The coordinator's view of the global model as a network, whichever family
// it is (models/family): the initial model (a mixed-precision net
// calibrated at the pretrain precision on a slice of the training data, a
// binary net from its seeded initialization), and after each round its
// held-out accuracy, its size at its bit-widths, and how its weight shards
// travel to agents that run their layers frozen. LibTorch stays behind this
// header.
//
//   ASSIGN_OR_RETURN(ModelState initial, InitialModel(spec, data_dir, 8));
//   ASSIGN_OR_RETURN(auto evaluator, ModelEvaluator::Create(spec, data_dir, 10000));
//   ModelStats stats = evaluator->Evaluate(model);
//
// Not thread-safe.

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/codec/update_codec.h"
#include "coordinator/model_state.h"
#include "coordinator/ops/metrics.h"
#include "models/family/model_spec.h"

namespace fedge {

// Intra-op threads for calibration and evaluation (LibTorch defaults to 1
// here).
void SetComputeThreads(int threads);

// Fashion-MNIST samples evaluated at a time: bounds the evaluation's
// activations whatever the held-out set's size.
inline constexpr int kEvalBatch = 200;

absl::StatusOr<ModelState> InitialModel(const ModelSpec& spec, const std::string& data_dir,
                                        int bits);

class ModelEvaluator {
 public:
  // `samples` of the Fashion-MNIST test split, padded to the model's input
  // (0: size only, no accuracy).
  static absl::StatusOr<std::unique_ptr<ModelEvaluator>> Create(const ModelSpec& spec,
                                                                const std::string& data_dir,
                                                                int64_t samples);
  ~ModelEvaluator();

  // Accuracy (-1 when there is no held-out set, or the model does not fit
  // the architecture) and size.
  ModelStats Evaluate(const ModelState& model);
  // Fails when `model` does not fit the architecture (a foreign checkpoint).
  absl::Status Check(const ModelState& model);
  // The frozen-layer coding of each weight shard of `model` (empty when it
  // does not fit).
  std::map<std::string, FrozenCoding> FrozenCodings(const ModelState& model);
  // Brings a mixed-precision `model` over the size budgets of `hyper` onto
  // them, in place, as each agent's first finetune phase would; false when
  // nothing moved (within budget, or a binary network). On error `model`
  // is unchanged.
  absl::StatusOr<bool> ProjectToBudget(const Hyper& hyper, ModelState* model);

 private:
  struct Impl;
  explicit ModelEvaluator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_EVALUATOR_H_
