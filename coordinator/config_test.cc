#include "coordinator/config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

CoordinatorFlags Valid() {
  CoordinatorFlags f;
  f.key = "keys/coordinator";
  f.allowlist = "allowlist";
  return f;
}

std::string ErrorOf(const CoordinatorFlags& f) {
  absl::StatusOr<CoordinatorConfig> c = ParseCoordinatorConfig(f);
  EXPECT_FALSE(c.ok());
  return c.ok() ? "" : std::string(c.status().message());
}

TEST(CoordinatorConfigTest, DefaultsMakeAWholeConfig) {
  absl::StatusOr<CoordinatorConfig> c = ParseCoordinatorConfig(Valid());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->total_rounds, 7);
  EXPECT_EQ(c->service.run.uplink, Codec::kSignEf);
  EXPECT_EQ(c->service.downlink, Codec::kFp16);
  EXPECT_TRUE(c->mixed_downlink);
  EXPECT_EQ(c->service.checkpoint_path, "coordinator_state/checkpoint.bin");
  EXPECT_EQ(c->service.liveness.timeout, absl::Seconds(30));
  EXPECT_TRUE(static_cast<bool>(c->service.planner));
  // The 2-bit budget of fmnist-cnn's weights.
  // The reference accounting: weights and the classifier's bias; the
  // activations without the image.
  EXPECT_FLOAT_EQ(c->service.run.hyper.weight_budget_kb,
                  (2.0f * c->model.quant.weight_count() + 32 * 10) / 8000);
  EXPECT_FLOAT_EQ(c->service.run.hyper.activation_budget_kb,
                  2.0f * (c->model.quant.activation_elements() - 784) / 8000);
  EXPECT_EQ(c->service.run.hyper.penalty_form, 0);
  EXPECT_EQ(c->service.run.hyper.size_accounting, 0);
  EXPECT_EQ(c->service.run.hyper.lambda_w, 1.0f);
  EXPECT_EQ(c->service.run.hyper.quantizer_every, 1u);
  EXPECT_EQ(c->service.run.lr_schedule, LrSchedule::kConstant);
}

TEST(CoordinatorConfigTest, BinaryNetworksAndTheirInputShape) {
  CoordinatorFlags f = Valid();
  f.arch = "cnv";
  absl::StatusOr<CoordinatorConfig> c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.family, ModelFamily::kBinary);
  EXPECT_EQ(c->model.input.height, 32);
  EXPECT_EQ(c->service.run.hyper.weight_budget_kb, 0);  // 1 bit already: no budget
  f.input_shape = "3x40x40";
  c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model.binary.layers[0].in_channels, 3);
  f.input_shape = "3x40";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--input_shape"));
  f.input_shape = "1x4x4";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--arch"));
  f = Valid();
  f.input_shape = "3x32x32";
  EXPECT_THAT(ErrorOf(f), HasSubstr("fmnist-cnn takes 1x28x28 images"));
  f = Valid();
  f.downlink = "fp32";
  c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->mixed_downlink);
  EXPECT_EQ(c->service.downlink, Codec::kFp32);
  f.downlink = "mixed-q8";
  c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->mixed_downlink);
  EXPECT_EQ(c->service.downlink, Codec::kQ);
  EXPECT_EQ(c->service.downlink_bits, 8);
  f.downlink = "q8";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--downlink must be"));
}

TEST(CoordinatorConfigTest, Schedules) {
  absl::StatusOr<std::vector<PhaseSpan>> s = ParseSchedule("pretrain:1,learn:4,finetune:2");
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[1].phase, Phase::kLearnPrecision);
  EXPECT_EQ((*s)[1].rounds, 4);
  EXPECT_THAT(std::string(ParseSchedule("pretrain:2,warmup:3").status().message()),
              HasSubstr("unknown phase 'warmup'"));
  EXPECT_THAT(std::string(ParseSchedule("pretrain:0").status().message()), HasSubstr("bad entry"));
  EXPECT_THAT(std::string(ParseSchedule("pretrain").status().message()), HasSubstr("bad entry"));
  EXPECT_THAT(std::string(ParseSchedule("").status().message()), HasSubstr("empty"));
}

TEST(CoordinatorConfigTest, Codecs) {
  Codec codec;
  int bits = 0;
  ASSERT_TRUE(ParseCodec("q4", &codec, &bits).ok());
  EXPECT_EQ(codec, Codec::kQ);
  EXPECT_EQ(bits, 4);
  ASSERT_TRUE(ParseCodec("sign-ef", &codec, &bits).ok());
  EXPECT_EQ(bits, 0);
  EXPECT_FALSE(ParseCodec("q9", &codec, &bits).ok());
  EXPECT_FALSE(ParseCodec("int8", &codec, &bits).ok());
  CoordinatorFlags f = Valid();
  f.downlink = "sign-ef";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--downlink must be mixed, mixed-q8, fp32 or fp16"));
  f = Valid();
  f.uplink = "q1";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--uplink"));
}

TEST(CoordinatorConfigTest, ServerOptimizersTakeTheirDefaultLearningRates) {
  CoordinatorFlags f = Valid();
  f.server_optimizer = "fedavgm";
  absl::StatusOr<CoordinatorConfig> c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->service.server_optimizer.kind, ServerOptimizerKind::kFedAvgM);
  EXPECT_EQ(c->service.server_optimizer.learning_rate, 1.0);
  EXPECT_EQ(c->service.server_optimizer.momentum, 0.9);
  f.server_optimizer = "fedadam";
  c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->service.server_optimizer.learning_rate, 1e-2);
  f.server_lr = 0.5;
  c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->service.server_optimizer.learning_rate, 0.5);
}

TEST(CoordinatorConfigTest, SeedPenaltyAndProjectAccounting) {
  CoordinatorFlags f = Valid();
  f.penalty = "absolute";
  f.size_accounting = "project";
  absl::StatusOr<CoordinatorConfig> c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->service.run.hyper.penalty_form, 1);
  EXPECT_EQ(c->service.run.hyper.size_accounting, 1);
  EXPECT_FLOAT_EQ(c->service.run.hyper.lambda_a, 1e-4f);
  EXPECT_FLOAT_EQ(c->service.run.hyper.activation_budget_kb,
                  2.0f * c->model.quant.activation_elements() / 8000);
}

TEST(CoordinatorConfigTest, AnActivationBudgetOfItsOwn) {
  CoordinatorFlags f = Valid();
  f.budget_bits = 1.35;
  f.activation_budget_bits = 2.65;
  absl::StatusOr<CoordinatorConfig> c = ParseCoordinatorConfig(f);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FLOAT_EQ(c->service.run.hyper.weight_budget_kb,
                  (1.35f * c->model.quant.weight_count() + 32 * 10) / 8000);
  EXPECT_FLOAT_EQ(c->service.run.hyper.activation_budget_kb,
                  2.65f * (c->model.quant.activation_elements() - 784) / 8000);
  f.activation_budget_bits = -1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--activation_budget_bits"));
}

TEST(CoordinatorConfigTest, BadValuesNameTheirFlag) {
  CoordinatorFlags f = Valid();
  f.quorum = 1.5;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--quorum"));
  f = Valid();
  f.rule = "mean";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--rule=mean"));
  f = Valid();
  f.server_optimizer = "sgd";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--server_optimizer=sgd"));
  f = Valid();
  f.penalty = "square";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--penalty=square"));
  f = Valid();
  f.lr_schedule = "step";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--lr_schedule"));
  f.lr_schedule = "cosine";
  ASSERT_TRUE(ParseCoordinatorConfig(f).ok());
  EXPECT_EQ(ParseCoordinatorConfig(f)->service.run.lr_schedule, LrSchedule::kCosine);
  f = Valid();
  f.size_accounting = "paper";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--size_accounting=paper"));
  f = Valid();
  f.server_optimizer = "fedavgm";
  f.server_momentum = 1.0;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--server_momentum"));
  f = Valid();
  f.server_lr = -1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--server_lr"));
  f = Valid();
  f.link_timeout_s = 1;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--link_timeout_s"));
  f.link_timeout_s = 0;  // TCP keepalive
  EXPECT_TRUE(ParseCoordinatorConfig(f).ok());
  f = Valid();
  f.max_update_scale = 0;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--max_update_scale"));
  f = Valid();
  f.metrics_address = "0.0.0.0:99999";
  EXPECT_THAT(ErrorOf(f), HasSubstr("--metrics_address"));
  f = Valid();
  f.arch = "vgg";
  EXPECT_FALSE(ParseCoordinatorConfig(f).ok());
  f = Valid();
  f.agent_timeout_s = 1;
  f.heartbeat_ms = 2000;
  EXPECT_THAT(ErrorOf(f), HasSubstr("--agent_timeout_s"));
  f = Valid();
  f.key.clear();
  EXPECT_THAT(ErrorOf(f), HasSubstr("CURVE needs --key and --allowlist"));
  f.plaintext = true;
  EXPECT_TRUE(ParseCoordinatorConfig(f).ok());
}

}  // namespace
}  // namespace fedge
