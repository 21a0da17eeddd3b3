#include "models/family/model_spec.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

TEST(ModelSpecTest, KnowsBothFamilies) {
  for (const std::string& name : KnownModelNames()) {
    absl::StatusOr<ModelSpec> spec = MakeModelSpec(name, std::nullopt);
    ASSERT_TRUE(spec.ok()) << name << ": " << spec.status();
    EXPECT_GT(spec->layer_count(), 1) << name;
  }
  absl::StatusOr<ModelSpec> cnv = MakeModelSpec("cnv", std::nullopt);
  ASSERT_TRUE(cnv.ok());
  EXPECT_EQ(cnv->family, ModelFamily::kBinary);
  EXPECT_EQ(cnv->input.height, 32);
  EXPECT_EQ(cnv->binary.layers.size(), 11u);
  absl::StatusOr<ModelSpec> cnn = MakeModelSpec("fmnist-cnn", std::nullopt);
  ASSERT_TRUE(cnn.ok());
  EXPECT_EQ(cnn->family, ModelFamily::kMixedPrecision);
  EXPECT_EQ(cnn->input.height, 28);
}

TEST(ModelSpecTest, BinaryNetworksAreBuiltForTheDataShape) {
  absl::StatusOr<ModelSpec> colour = MakeModelSpec("cnv", InputShape{3, 40, 40}, 5);
  ASSERT_TRUE(colour.ok()) << colour.status();
  EXPECT_EQ(colour->binary.layers[0].in_channels, 3);
  EXPECT_EQ(colour->binary.layers.back().out_channels, 5);
  EXPECT_THAT(MakeModelSpec("cnv", InputShape{1, 8, 8}).status().message(), HasSubstr("cnv"));
  EXPECT_THAT(MakeModelSpec("fmnist-cnn", InputShape{3, 32, 32}).status().message(),
              HasSubstr("takes 1x28x28 images, not 3x32x32"));
  EXPECT_THAT(MakeModelSpec("fmnist-cnn", std::nullopt, 5).status().message(),
              HasSubstr("has 10 classes, not 5"));
  EXPECT_THAT(MakeModelSpec("resnet", std::nullopt).status().message(),
              HasSubstr("unknown model 'resnet'; known: fmnist-cnn"));
}

TEST(ModelSpecTest, TrainingMemoryFallsAsLayersFreeze) {
  for (const char* name : {"cnv", "fmnist-cnn"}) {
    absl::StatusOr<ModelSpec> spec = MakeModelSpec(name, std::nullopt);
    ASSERT_TRUE(spec.ok());
    int64_t previous = spec->TrainingMemory(0, 64);
    for (int from = 1; from < spec->layer_count(); ++from) {
      const int64_t bytes = spec->TrainingMemory(from, 64);
      EXPECT_LE(bytes, previous) << name << " from " << from;
      previous = bytes;
    }
    EXPECT_LT(spec->TrainingMemory(spec->layer_count() - 1, 64), spec->TrainingMemory(0, 64));
    EXPECT_LT(spec->TrainingMemory(0, 16), spec->TrainingMemory(0, 64));
  }
}

}  // namespace
}  // namespace fedge
