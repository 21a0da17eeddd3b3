#include "models/shape/layer_shape.h"

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(LayerShapeTest, WeightsAndActivationsOfEachKind) {
  LayerShape conv;
  conv.in_channels = 32;
  conv.out_channels = 64;
  conv.kernel = 3;
  conv.in_height = conv.in_width = 14;
  conv.out_height = conv.out_width = 14;
  EXPECT_EQ(conv.weight_count(), 3 * 3 * 32 * 64);
  EXPECT_EQ(conv.input_elements(), 32 * 14 * 14);
  EXPECT_EQ(conv.output_elements(), 64 * 14 * 14);
  LayerShape depthwise = conv;
  depthwise.out_channels = 32;
  depthwise.groups = 32;
  EXPECT_EQ(depthwise.weight_count(), 3 * 3 * 32);
  LayerShape pool = conv;
  pool.has_weights = false;
  EXPECT_EQ(pool.weight_count(), 0);
  LayerShape linear;
  linear.in_channels = 3136;
  linear.out_channels = 128;
  EXPECT_EQ(linear.weight_count(), 3136 * 128);
  EXPECT_EQ(linear.input_elements(), 3136);
}

}  // namespace
}  // namespace fedge
