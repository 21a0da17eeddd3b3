#include "coordinator/evaluator.h"

#include <ATen/Parallel.h>

#include <utility>

#include "common/status/status_macros.h"
#include "models/data/dataset.h"
#include "models/quant/model_shards.h"
#include "models/quant/phase_trainer.h"
#include "models/quant/quant_net.h"

namespace fedge {

void SetComputeThreads(int threads) { at::set_num_threads(threads); }

absl::StatusOr<ModelState> CalibratedModel(const QuantArch& arch, const std::string& data_dir,
                                           int bits) {
  ASSIGN_OR_RETURN(const Dataset calibration, LoadFashionMnist(data_dir, DataSplit::kTrain, {256, 0}));
  QuantNet net(arch, QuantNetOptions());
  net.Calibrate(calibration.Range(0, calibration.size()), bits);
  ModelState model;
  model.shards = ExportShards(net.Named());
  return model;
}

struct ModelEvaluator::Impl {
  Impl(const QuantArch& arch, Dataset data) : net(arch, QuantNetOptions()), held_out(std::move(data)) {}
  QuantNet net;
  Dataset held_out;
};

ModelEvaluator::ModelEvaluator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ModelEvaluator::~ModelEvaluator() = default;

absl::StatusOr<std::unique_ptr<ModelEvaluator>> ModelEvaluator::Create(const QuantArch& arch,
                                                                        const std::string& data_dir,
                                                                        int64_t samples) {
  Dataset held_out;
  if (samples > 0) {
    ASSIGN_OR_RETURN(held_out, LoadFashionMnist(data_dir, DataSplit::kTest, {samples, 0}));
  }
  return std::unique_ptr<ModelEvaluator>(
      new ModelEvaluator(std::make_unique<Impl>(arch, std::move(held_out))));
}

absl::Status ModelEvaluator::Check(const ModelState& model) {
  return ImportShards(impl_->net.Named(), model.shards);
}

ModelStats ModelEvaluator::Evaluate(const ModelState& model) {
  ModelStats stats;
  const absl::Status loaded = ImportShards(impl_->net.Named(), model.shards);
  if (loaded.ok() && impl_->held_out.size() > 0) {
    stats.test_accuracy = EvaluateQuant(impl_->net, impl_->held_out).value_or(-1.0);
  }
  const SizeReport size = impl_->net.Size();
  stats.model_bytes = 1000 * size.total_kb();
  stats.weight_bits = size.mean_weight_bits;
  stats.activation_bits = size.mean_activation_bits;
  return stats;
}

}  // namespace fedge
