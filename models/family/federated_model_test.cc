#include "models/family/federated_model.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "models/data/dataset.h"
#include "models/export/model_export.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

// Separable synthetic data: the class is which quadrant is bright.
Dataset Quadrants(const InputShape& shape, int64_t n, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  Dataset data;
  data.num_classes = 4;
  data.mean = 0.5f;
  data.stddev = 0.5f;
  data.labels = at::randint(0, 4, {n}, gen, at::TensorOptions().dtype(at::kLong));
  at::Tensor images = at::randint(0, 60, {n, shape.channels, shape.height, shape.width}, gen,
                                  at::TensorOptions().dtype(at::kByte));
  const int h = shape.height / 2, w = shape.width / 2;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t q = data.labels[i].item<int64_t>();
    images[i].narrow(1, (q / 2) * h, h).narrow(2, (q % 2) * w, w).add_(180);
  }
  data.images = images;
  return data;
}

std::unique_ptr<FederatedModel> Make(const std::string& name, InputShape input, int classes) {
  absl::StatusOr<ModelSpec> spec = MakeModelSpec(name, input, classes);
  EXPECT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::unique_ptr<FederatedModel>> model = FederatedModel::Create(*spec, 3);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

PhaseConfig Steps(int steps) {
  PhaseConfig config;
  config.steps = steps;
  config.batch_size = 32;
  config.learning_rate = 1e-2;
  return config;
}

TEST(FederatedModelTest, BinaryNetworkLearnsThroughTheInterface) {
  const InputShape input{1, 28, 28};
  std::unique_ptr<FederatedModel> model = Make("mlp", input, 4);
  const Dataset train = Quadrants(input, 512, 1), test = Quadrants(input, 256, 2);
  absl::StatusOr<double> before = model->Evaluate(test, 64);
  ASSERT_TRUE(before.ok()) << before.status();
  absl::StatusOr<PhaseReport> report = model->Train(train, Steps(60));
  ASSERT_TRUE(report.ok()) << report.status();
  absl::StatusOr<double> after = model->Evaluate(test, 64);
  ASSERT_TRUE(after.ok());
  EXPECT_GT(*after, 0.9) << "before training: " << *before;
  const ModelSize size = model->Size();
  EXPECT_EQ(size.mean_weight_bits, 1);
  EXPECT_NEAR(size.weight_kb, model->spec().binary.weight_count() / 8000.0, 1e-9);
}

TEST(FederatedModelTest, BinaryInitialModelCarriesTheDataStatistics) {
  std::unique_ptr<FederatedModel> model = Make("cnv", {1, 32, 32}, 10);
  Dataset sample = Quadrants({1, 32, 32}, 64, 4);
  ASSERT_TRUE(model->Initialize(sample, 8).ok());
  for (const ModelShard& s : model->ExportShards()) {
    if (s.name == "conv6.running_sigma") {
      // Popcount sums over 2304 inputs: sigma far above its initial 1.
      EXPECT_GT(*std::max_element(s.values.begin(), s.values.end()), 5.0f);
    }
    if (s.name.find(".weight") != std::string::npos) {
      for (float v : s.values) ASSERT_TRUE(std::isfinite(v));
    }
  }
}

TEST(FederatedModelTest, FrozenBinaryLayersDoNotMove) {
  const InputShape input{1, 28, 28};
  std::unique_ptr<FederatedModel> model = Make("mlp", input, 4);
  const std::vector<ModelShard> before = model->ExportShards();
  model->FreezeBefore(3);
  ASSERT_TRUE(model->Train(Quadrants(input, 128, 1), Steps(5)).ok());
  const std::vector<ModelShard> after = model->ExportShards();
  ASSERT_EQ(before.size(), after.size());
  bool suffix_moved = false;
  for (size_t i = 0; i < before.size(); ++i) {
    const bool weight = before[i].name.find(".weight") != std::string::npos ||
                        before[i].name.find(".beta") != std::string::npos;
    if (before[i].layer < 3 && weight) {
      EXPECT_EQ(before[i].values, after[i].values) << before[i].name;
    }
    if (before[i].layer >= 3 && before[i].values != after[i].values) suffix_moved = true;
  }
  EXPECT_TRUE(suffix_moved);
}

TEST(FederatedModelTest, BinaryOptimizerStateCarriesOverOnlyWhenAsked) {
  // From the same weights with the same seed, a fresh Adam repeats the
  // first task exactly; Adam's moments kept from it take other steps.
  const InputShape input{1, 28, 28};
  const Dataset train = Quadrants(input, 256, 1);
  for (const bool keep : {false, true}) {
    std::unique_ptr<FederatedModel> model = Make("mlp", input, 4);
    const std::vector<ModelShard> start = model->ExportShards();
    ASSERT_TRUE(model->Train(train, Steps(5)).ok());
    const std::vector<ModelShard> first = model->ExportShards();
    ASSERT_TRUE(model->ImportShards(start).ok());
    PhaseConfig again = Steps(5);
    again.keep_optimizer_state = keep;
    ASSERT_TRUE(model->Train(train, again).ok());
    const std::vector<ModelShard> second = model->ExportShards();
    bool same = true;
    for (size_t s = 0; s < first.size(); ++s) same = same && first[s].values == second[s].values;
    EXPECT_EQ(same, !keep) << (keep ? "kept" : "fresh");
  }
}

TEST(FederatedModelTest, ShardsRoundTripAndMismatchesAreRefused) {
  for (const char* name : {"cnv", "fmnist-cnn"}) {
    std::unique_ptr<FederatedModel> a = Make(name, name == std::string("cnv") ? InputShape{1, 32, 32}
                                                                          : InputShape{1, 28, 28},
                                             10);
    std::vector<ModelShard> shards = a->ExportShards();
    ASSERT_FALSE(shards.empty());
    for (float& v : shards[0].values) v = 0.25f;
    ASSERT_TRUE(a->ImportShards(shards).ok());
    EXPECT_EQ(a->ExportShards()[0].values, shards[0].values) << name;
    shards[0].values.pop_back();
    EXPECT_THAT(a->ImportShards(shards).message(), HasSubstr("values"));
    shards[0].name = "nope";
    EXPECT_THAT(a->ImportShards(shards).message(), HasSubstr("no tensor 'nope'"));
  }
}

TEST(FederatedModelTest, FrozenCodingsCoverEveryWeightShard) {
  std::unique_ptr<FederatedModel> cnv = Make("cnv", {1, 32, 32}, 10);
  const auto codings = cnv->FrozenCodings();
  EXPECT_EQ(codings.size(), 9u);  // six convolutions, three linear layers
  EXPECT_EQ(codings.at("conv1.weight").codec, Codec::kSignEf);
  EXPECT_EQ(codings.at("conv1.weight").sign_slices, 64);
  std::unique_ptr<FederatedModel> cnn = Make("fmnist-cnn", {1, 28, 28}, 10);
  const auto mixed = cnn->FrozenCodings();
  ASSERT_FALSE(mixed.empty());
  for (const auto& [name, coding] : mixed) {
    EXPECT_EQ(coding.codec, Codec::kMixed) << name;
    for (const SliceInfo& s : coding.slices) {
      EXPECT_GE(s.bits, 1);
      EXPECT_GT(s.step, 0);
    }
  }
}

TEST(FederatedModelTest, ABinarySliceGoesDownAsSignsTimesItsScale) {
  // fc1 of fmnist-cnn made a binary slice (step 0.2 > 2 x range 0.05).
  std::unique_ptr<FederatedModel> cnn = Make("fmnist-cnn", {1, 28, 28}, 10);
  std::vector<ModelShard> shards = cnn->ExportShards();
  std::vector<float> weights;
  for (ModelShard& s : shards) {
    if (s.name == "fc1.w_step") s.values = {0.2f};
    if (s.name == "fc1.w_range") s.values = {0.05f};
    if (s.name == "fc1.weight") weights = s.values;
  }
  ASSERT_TRUE(cnn->ImportShards(shards).ok());
  ASSERT_FALSE(weights.empty());
  const FrozenCoding coding = cnn->FrozenCodings().at("fc1.weight");
  ASSERT_EQ(coding.slices.size(), 1u);
  EXPECT_EQ(coding.slices[0].bits, 1);
  WireTensor t;
  t.shape = {128, static_cast<uint32_t>(weights.size() / 128)};
  ASSERT_TRUE(EncodeFrozen(weights, coding, &t).ok());
  EXPECT_EQ(t.payload.size(), (weights.size() + 7) / 8);
  std::vector<float> back(weights.size());
  ASSERT_TRUE(DecodeTensor(t, absl::MakeSpan(back)).ok());
  for (size_t i = 0; i < weights.size(); ++i) {
    ASSERT_FLOAT_EQ(back[i], weights[i] >= 0 ? 0.05f : -0.05f) << i;
  }
}

TEST(FederatedModelTest, ProjectionBringsAMixedModelOntoItsBudgetOnce) {
  std::unique_ptr<FederatedModel> cnn = Make("fmnist-cnn", {1, 28, 28}, 10);
  const InputShape input{1, 28, 28};
  ASSERT_TRUE(cnn->Initialize(Quadrants(input, 64, 1), 6).ok());
  const QuantArch arch = *MakeQuantArch("fmnist-cnn");
  Budget budget;
  budget.weight_kb = arch.WeightBudgetKb(2);
  budget.activation_kb = arch.ActivationBudgetKb(2);
  absl::StatusOr<bool> moved = cnn->ProjectToBudget(budget);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_TRUE(*moved);
  EXPECT_LE(cnn->Size().weight_kb, budget.weight_kb * (1 + 1e-9));
  EXPECT_LE(cnn->Size().activation_kb, budget.activation_kb * (1 + 1e-9));
  // Together: between the two averages, nearer the weights' (far more elements).
  const ModelSize size = cnn->Size();
  const double w = size.mean_weight_bits, a = size.mean_activation_bits;
  EXPECT_NEAR(size.mean_bits(),
              size.total_kb() / (size.weight_kb / w + size.activation_kb / a), 1e-12);
  EXPECT_LT(std::abs(size.mean_bits() - w), std::abs(size.mean_bits() - a));
  EXPECT_FALSE(*cnn->ProjectToBudget(budget));  // within budget: nothing moves
  // A binary network has no bit-widths to project.
  EXPECT_FALSE(*Make("cnv", {1, 32, 32}, 10)->ProjectToBudget(budget));
}

TEST(FederatedModelTest, BinaryExportPacksOneBitWeightsAndPredictsTheSame) {
  const InputShape input{1, 28, 28};
  std::unique_ptr<FederatedModel> model = Make("mlp", input, 4);
  const Dataset train = Quadrants(input, 256, 1), test = Quadrants(input, 200, 5);
  ASSERT_TRUE(model->Train(train, Steps(20)).ok());
  ExportReport report;
  absl::StatusOr<std::string> file = model->SerializeExport(&report);
  ASSERT_TRUE(file.ok()) << file.status();
  // One bit per weight, each tensor's stream rounded up to a byte.
  EXPECT_GE(report.packed_weight_bytes * 8, model->spec().binary.weight_count());
  EXPECT_LE(report.packed_weight_bytes, model->spec().binary.weight_count() / 8 + 8);
  EXPECT_EQ(report.mean_weight_bits, 1);
  absl::StatusOr<std::unique_ptr<FederatedModel>> loaded = FederatedModel::ParseExport(*file);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->spec().name, "mlp");
  EXPECT_EQ(*(*loaded)->Evaluate(test, 50), *model->Evaluate(test, 50));
  // Damage is found.
  std::string bad = *file;
  bad[bad.size() / 2] ^= 1;
  EXPECT_FALSE(FederatedModel::ParseExport(bad).ok());
  EXPECT_FALSE(FederatedModel::ParseExport(file->substr(0, file->size() - 3)).ok());
}

TEST(FederatedModelTest, MixedPrecisionExportLoadsThroughTheSameCall) {
  std::unique_ptr<FederatedModel> model = Make("fmnist-mlp", {1, 28, 28}, 10);
  absl::StatusOr<std::string> file = model->SerializeExport(nullptr);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<std::unique_ptr<FederatedModel>> loaded = FederatedModel::ParseExport(*file);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->spec().family, ModelFamily::kMixedPrecision);
}

// The task's size accounting reaches the network's size model: the project
// accounting counts the 784-pixel image (at the 8 bits of a fresh network)
// and no bias; the reference one counts the classifier's ten float32 biases.
TEST(FederatedModelTest, SizeAccountingFollowsTheTask) {
  std::unique_ptr<FederatedModel> model = Make("fmnist-mlp", {1, 28, 28}, 10);
  const ModelSize reference = model->Size();
  model->SetSizeAccounting(SizeAccounting::kProject);
  const ModelSize project = model->Size();
  EXPECT_NEAR(project.activation_kb - reference.activation_kb, 784.0 * 8 / 8000, 1e-9);
  EXPECT_NEAR(reference.weight_kb - project.weight_kb, 10.0 * 32 / 8000, 1e-9);
  // A binary network has no learned bit-widths: nothing to account.
  std::unique_ptr<FederatedModel> binary = Make("mlp", {1, 28, 28}, 4);
  const ModelSize before = binary->Size();
  binary->SetSizeAccounting(SizeAccounting::kProject);
  EXPECT_EQ(binary->Size().total_kb(), before.total_kb());
}

}  // namespace
}  // namespace fedge
