#include "models/bnn/arch.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

TEST(ArchTest, CnvShapesAt32x32) {
  absl::StatusOr<ArchSpec> cnv = MakeArch("cnv", {1, 32, 32});
  ASSERT_TRUE(cnv.ok()) << cnv.status();
  // conv 30, conv 28, pool 14, conv 12, conv 10, pool 5, conv 3, conv 1,
  // fc 512, fc 512, fc 10.
  const int heights[] = {30, 28, 14, 12, 10, 5, 3, 1, 1, 1, 1};
  ASSERT_EQ(cnv->layers.size(), 11u);
  for (size_t i = 0; i < cnv->layers.size(); ++i) {
    EXPECT_EQ(cnv->layers[i].out_height, heights[i]) << cnv->layers[i].name;
  }
  EXPECT_EQ(cnv->layers[8].in_channels, 256);  // flattened 256x1x1
  // 9*(1*64 + 64*64 + 64*128 + 128*128 + 128*256 + 256*256)
  //   + 256*512 + 512*512 + 512*10
  EXPECT_EQ(cnv->weight_count(),
            9 * (64 + 4096 + 8192 + 16384 + 32768 + 65536) + 131072 +
                262144 + 5120);
  EXPECT_EQ(cnv->first_weight_layer(), 0);
  EXPECT_EQ(cnv->layers[2].kind, LayerKind::kMaxPool);
  EXPECT_EQ(cnv->layers[2].name, "pool1");
  EXPECT_EQ(cnv->layers[8].name, "fc1");
}

TEST(ArchTest, BinaryNetKeepsSizeWithSamePadding) {
  absl::StatusOr<ArchSpec> net = MakeArch("binarynet", {3, 32, 32});
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->layers[0].out_height, 32);
  EXPECT_EQ(net->layers[2].out_height, 16);
  // After three pools: 512 x 4 x 4 into fc1.
  EXPECT_EQ(net->layers[9].in_channels, 512 * 4 * 4);
  EXPECT_EQ(net->layers.back().out_channels, 10);
}

TEST(ArchTest, MlpSizesFirstLayerToInput) {
  absl::StatusOr<ArchSpec> mlp = MakeArch("mlp", {1, 28, 28});
  ASSERT_TRUE(mlp.ok()) << mlp.status();
  ASSERT_EQ(mlp->layers.size(), 5u);
  EXPECT_EQ(mlp->layers[0].in_channels, 784);
  EXPECT_EQ(mlp->weight_count(), 784 * 256 + 3 * 256 * 256 + 256 * 10);
}

TEST(ArchTest, RejectsInputTooSmallNamingTheLayer) {
  absl::StatusOr<ArchSpec> cnv = MakeArch("cnv", {1, 28, 28});
  ASSERT_FALSE(cnv.ok());
  EXPECT_EQ(cnv.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(cnv.status().message()), HasSubstr("conv6"));
}

TEST(ArchTest, RejectsUnknownNameAndBadShapes) {
  EXPECT_EQ(MakeArch("resnet-9000", {1, 28, 28}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(MakeArch("mlp", {0, 28, 28}).ok());
  EXPECT_FALSE(MakeArch("mlp", {1, 28, 28}, 1).ok());
}

TEST(ArchTest, ParsesInputShapes) {
  absl::StatusOr<InputShape> shape = ParseInputShape("3x32x32");
  ASSERT_TRUE(shape.ok());
  EXPECT_EQ(shape->channels, 3);
  EXPECT_EQ(shape->height, 32);
  for (const char* bad : {"", "3x32", "3x32x", "ax32x32", "0x1x1", "1x-2x2",
                          "1x1x1x1", "1x99999x1"}) {
    EXPECT_FALSE(ParseInputShape(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace fedge
