#include "models/family/federated_model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "models/bnn/binary_net.h"
#include "models/bnn/trainer.h"
#include "models/data/dataset.h"
#include "models/export/model_export.h"
#include "models/quant/model_shards.h"
#include "models/quant/quant_net.h"
#include "models/quant/quantizer.h"

namespace fedge {
namespace {

class MixedPrecisionModel : public FederatedModel {
 public:
  MixedPrecisionModel(const ModelSpec& spec, std::unique_ptr<QuantNet> net)
      : FederatedModel(spec), net_(std::move(net)) {}

  std::vector<ModelShard> ExportShards() override { return fedge::ExportShards(net_->Named()); }
  absl::Status ImportShards(const std::vector<ModelShard>& shards) override {
    return fedge::ImportShards(net_->Named(), shards);
  }
  void FreezeBefore(int layer) override { net_->FreezeBefore(layer); }

  absl::Status Initialize(const Dataset& sample, int bits) override {
    return CallTorch("calibrating the quantizers", [&] {
      net_->Calibrate(sample.Range(0, sample.size()), bits);
      return absl::OkStatus();
    });
  }

  absl::StatusOr<PhaseReport> Train(const Dataset& data, const PhaseConfig& config) override {
    return RunPhase(*net_, data, config);
  }

  absl::StatusOr<double> Evaluate(const Dataset& data, int batch_size) override {
    return EvaluateQuant(*net_, data, batch_size);
  }

  void SetSizeAccounting(SizeAccounting accounting) override { net_->set_accounting(accounting); }

  ModelSize Size() override {
    const SizeReport size = net_->Size();
    return {size.weight_kb, size.activation_kb, size.mean_weight_bits, size.mean_activation_bits};
  }

  absl::StatusOr<bool> ProjectToBudget(const Budget& budget) override {
    bool moved = false;
    RETURN_IF_ERROR(CallTorch("projecting onto the budget", [&] {
      const QuantNet::Projection p = net_->ProjectToBudget(budget);
      moved = p.weight_cuts + p.activation_cuts + p.weight_refills + p.activation_refills > 0;
      return absl::OkStatus();
    }));
    return moved;
  }

  std::map<std::string, FrozenCoding> FrozenCodings() override {
    std::map<std::string, FrozenCoding> out;
    at::NoGradGuard no_grad;
    std::map<std::string, at::Tensor> by_name;
    for (const NamedTensor& t : net_->Named()) by_name[t.name] = t.tensor->detach();
    const std::vector<LayerBits> bits = net_->Bits();
    const std::vector<QuantLayerSpec>& layers = spec().quant.layers;
    for (size_t i = 0; i < layers.size(); ++i) {
      const std::string prefix = layers[i].name + ".";
      const at::Tensor d = by_name.at(prefix + "w_step").to(at::kFloat).contiguous();
      const at::Tensor xmax = by_name.at(prefix + "w_range").to(at::kFloat).contiguous();
      FrozenCoding coding;
      const std::vector<int>& slice_bits = bits[i].weight_bits;
      for (int64_t s = 0; s < d.numel(); ++s) {
        SliceInfo slice;
        slice.bits = static_cast<uint8_t>(slice_bits[s]);
        slice.step = d.data_ptr<float>()[s];
        slice.range = xmax.data_ptr<float>()[s];
        coding.slices.push_back(slice);
      }
      out[prefix + "weight"] = std::move(coding);
    }
    return out;
  }

  absl::StatusOr<std::string> SerializeExport(ExportReport* report) override {
    return SerializeExportedModel(*net_, report);
  }

 private:
  std::unique_ptr<QuantNet> net_;
};

class BinaryModel : public FederatedModel {
 public:
  BinaryModel(const ModelSpec& spec, uint64_t seed)
      : FederatedModel(spec), net_(spec.binary, Options(seed), /*ledger=*/nullptr) {}

  std::vector<ModelShard> ExportShards() override { return fedge::ExportShards(net_.Named()); }
  absl::Status ImportShards(const std::vector<ModelShard>& shards) override {
    return fedge::ImportShards(net_.Named(), shards);
  }
  void FreezeBefore(int layer) override { net_.FreezeBefore(layer); }

  // The seeded weights, with the norms' running statistics of `sample`:
  // the updates of the first rounds then move them by their own scale (the
  // coordinator bounds each update by the model's).
  absl::Status Initialize(const Dataset& sample, int) override {
    return CallTorch("setting the norms' statistics", [&] {
      net_.SetNormStatistics(sample.Range(0, sample.size()));
      return absl::OkStatus();
    });
  }

  absl::StatusOr<PhaseReport> Train(const Dataset& data, const PhaseConfig& config) override {
    if (config.steps < 1 || config.batch_size < 1 || !(config.learning_rate > 0)) {
      return absl::InvalidArgumentError(absl::StrCat("steps (", config.steps, "), batch size (",
                                                     config.batch_size, ") and learning rate (",
                                                     config.learning_rate, ") must be positive"));
    }
    if (data.size() == 0) return absl::InvalidArgumentError("no training data");
    PhaseReport report;
    const auto start = std::chrono::steady_clock::now();
    RETURN_IF_ERROR(CallTorch(absl::StrCat("training ", spec().name), [&]() -> absl::Status {
      net_.set_learning_rate(config.learning_rate);
      if (!config.keep_optimizer_state) net_.ResetOptimizer();
      BatchSampler batches(data, config.batch_size, config.seed);
      const int64_t tail = std::max<int64_t>(1, config.steps / 4);
      double loss_sum = 0, correct = 0, seen = 0;
      for (int64_t step = 0; step < config.steps; ++step) {
        if (config.cancel != nullptr && config.cancel->load()) {
          return absl::CancelledError(
              absl::StrCat("stopped after ", step, " of ", config.steps, " steps"));
        }
        at::Tensor x, y;
        batches.Next(&x, &y);
        const at::Tensor logits = net_.Forward(x, /*training=*/true);
        const at::Tensor loss = at::nll_loss(at::log_softmax(logits, 1), y);
        loss.backward();
        net_.Step();
        if (step >= config.steps - tail) {
          loss_sum += loss.item<double>() * y.size(0);
          correct += logits.argmax(1).eq(y).sum().item<double>();
          seen += y.size(0);
        }
      }
      report.steps = config.steps;
      report.loss = loss_sum / std::max(1.0, seen);
      report.accuracy = correct / std::max(1.0, seen);
      return absl::OkStatus();
    }));
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    report.size = SizeReport();
    return report;
  }

  absl::StatusOr<double> Evaluate(const Dataset& data, int batch_size) override {
    return fedge::Evaluate(net_, data, batch_size);
  }

  ModelSize Size() override {
    const ArchSpec& arch = spec().binary;
    ModelSize size;
    int64_t activations = 0;
    const int first = arch.first_weight_layer();
    for (size_t i = 0; i < arch.layers.size(); ++i) {
      const LayerSpec& l = arch.layers[i];
      if (l.has_weights && static_cast<int>(i) != first) activations += l.input_elements();
    }
    size.weight_kb = static_cast<double>(arch.weight_count()) / 8000;
    size.activation_kb = static_cast<double>(activations) / 8000;
    size.mean_weight_bits = 1;
    size.mean_activation_bits = 1;
    return size;
  }

  std::map<std::string, FrozenCoding> FrozenCodings() override {
    std::map<std::string, FrozenCoding> out;
    for (const LayerSpec& l : spec().binary.layers) {
      if (!l.has_weights) continue;
      FrozenCoding coding;
      coding.codec = Codec::kSignEf;
      coding.sign_slices = l.out_channels;
      out[l.name + ".weight"] = coding;
    }
    return out;
  }

  absl::StatusOr<std::string> SerializeExport(ExportReport* report) override {
    return SerializeExportedBinary(net_.Named(), spec().binary, report);
  }

 private:
  static MemorySavingOptions Options(uint64_t seed) {
    MemorySavingOptions options;
    options.seed = seed;
    return options;
  }
  MemorySavingNet net_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<FederatedModel>> FederatedModel::Create(const ModelSpec& spec,
                                                                       uint64_t seed) {
  std::unique_ptr<FederatedModel> model;
  RETURN_IF_ERROR(CallTorch(absl::StrCat("building ", spec.name), [&] {
    if (spec.family == ModelFamily::kBinary) {
      model = std::make_unique<BinaryModel>(spec, seed);
    } else {
      QuantNetOptions options;
      options.seed = seed;
      model = std::make_unique<MixedPrecisionModel>(spec, std::make_unique<QuantNet>(spec.quant, options));
    }
    return absl::OkStatus();
  }));
  return model;
}

absl::StatusOr<std::unique_ptr<FederatedModel>> FederatedModel::ParseExport(
    const std::string& bytes) {
  if (IsExportedBinary(bytes)) {
    ASSIGN_OR_RETURN(ExportedBinary file, ParseExportedBinary(bytes));
    ASSIGN_OR_RETURN(const ModelSpec spec, MakeModelSpec(file.arch, file.input, file.num_classes));
    ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> model, Create(spec));
    RETURN_IF_ERROR(Annotate(model->ImportShards(file.shards),
                             absl::StrCat("the model file does not fit ", spec.name)));
    return model;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<QuantNet> net, ParseExportedModel(bytes));
  ASSIGN_OR_RETURN(const ModelSpec spec, MakeModelSpec(net->arch().name, std::nullopt));
  return std::unique_ptr<FederatedModel>(new MixedPrecisionModel(spec, std::move(net)));
}

}  // namespace fedge
