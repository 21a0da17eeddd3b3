#include "common/wire/wire_codec.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "capnp/message.h"
#include "capnp/serialize.h"
#include "common/codec/update_codec.h"
#include "common/wire/wire.capnp.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

WireTensor SmallTensor(uint32_t layer, Codec codec) {
  WireTensor t;
  t.layer = layer;
  t.name = "weight";
  t.shape = {4, 3};
  std::vector<float> values = {0.1f, -0.2f, 0.3f, 0.4f, -0.5f, 0.6f,
                               0.7f, -0.8f, 0.9f, 1.0f, -1.1f, 1.2f};
  std::vector<float> residual(values.size());
  EXPECT_TRUE(EncodeUpdate(values, {codec, codec == Codec::kQ ? 4 : 0, 4}, 3,
                           &residual, &t)
                  .ok());
  return t;
}

Message Sample(Body body) {
  Message m;
  m.device_id = "board-17";
  m.session_id = 42;
  m.body = std::move(body);
  return m;
}

Message RoundTrip(const Message& m) {
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
  EXPECT_TRUE(frames.ok()) << frames.status();
  absl::StatusOr<Message> back = DecodeMessage(*frames);
  EXPECT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->device_id, m.device_id);
  EXPECT_EQ(back->session_id, m.session_id);
  EXPECT_EQ(back->body.index(), m.body.index());
  return *back;
}

void ExpectSameTensors(const std::vector<WireTensor>& a, const std::vector<WireTensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].layer, b[i].layer);
    EXPECT_EQ(a[i].name, b[i].name);
    EXPECT_EQ(a[i].shape, b[i].shape);
    EXPECT_EQ(a[i].codec, b[i].codec);
    EXPECT_EQ(a[i].bits, b[i].bits);
    EXPECT_EQ(a[i].slices, b[i].slices);
    EXPECT_EQ(a[i].payload, b[i].payload);
  }
}

TEST(WireCodecTest, EveryMessageRoundTrips) {
  Register reg{512ull << 20, 4, 6000, "fedge 0.1", 31, true};
  const Message r = RoundTrip(Sample(reg));
  EXPECT_EQ(std::get<Register>(r.body).has_task, 31u);
  EXPECT_TRUE(std::get<Register>(r.body).new_connection);
  EXPECT_EQ(std::get<Register>(r.body).memory_budget_bytes, 512ull << 20);
  EXPECT_EQ(std::get<Register>(r.body).agent_version, "fedge 0.1");

  EXPECT_EQ(std::get<Heartbeat>(RoundTrip(Sample(Heartbeat{7})).body).busy_task, 7u);
  EXPECT_EQ(std::get<Welcome>(RoundTrip(Sample(Welcome{9, 250})).body).heartbeat_interval_ms,
            250u);
  EXPECT_EQ(std::get<NoTask>(RoundTrip(Sample(NoTask{1500})).body).retry_after_ms, 1500u);
  const ResultAck ack = std::get<ResultAck>(RoundTrip(Sample(ResultAck{77, true, ""})).body);
  EXPECT_EQ(ack.task_id, 77u);
  EXPECT_TRUE(ack.accepted);
  EXPECT_EQ(std::get<ResultAck>(RoundTrip(Sample(ResultAck{78, false, "non_finite"})).body).reason,
            "non_finite");
  EXPECT_EQ(std::get<Reject>(RoundTrip(Sample(Reject{"unknown key"})).body).reason,
            "unknown key");
  EXPECT_EQ(std::get<TaskFailed>(RoundTrip(Sample(TaskFailed{3, 4, "out of memory"})).body)
                .reason,
            "out of memory");

  Task task;
  task.round_id = 5;
  task.task_id = 77;
  task.model_version = 4;
  task.phase = Phase::kLearnPrecision;
  task.deadline_ms = 30000;
  task.hyper.penalty_scale = 0.5f;
  task.hyper.weight_budget_kb = 40;
  task.hyper.penalty_form = 1;
  task.hyper.size_accounting = 1;
  task.uplink_codec = Codec::kQ;
  task.uplink_bits = 4;
  task.trainable_from = 2;
  task.seed = 99;
  task.shards = {SmallTensor(0, Codec::kFp16), SmallTensor(1, Codec::kFp32)};
  const Message t = RoundTrip(Sample(task));
  const Task& back = std::get<Task>(t.body);
  EXPECT_EQ(back.phase, Phase::kLearnPrecision);
  EXPECT_EQ(back.uplink_codec, Codec::kQ);
  EXPECT_EQ(back.uplink_bits, 4);
  EXPECT_EQ(back.trainable_from, 2u);
  EXPECT_FLOAT_EQ(back.hyper.penalty_scale, 0.5f);
  EXPECT_FLOAT_EQ(back.hyper.weight_budget_kb, 40.0f);
  EXPECT_EQ(back.hyper.penalty_form, 1);
  EXPECT_EQ(back.hyper.size_accounting, 1);
  ExpectSameTensors(back.shards, task.shards);

  TaskResult result;
  result.round_id = 5;
  result.task_id = 77;
  result.samples = 600;
  result.loss = 0.7f;
  result.accuracy = 0.81f;
  result.peak_memory_bytes = 12 << 20;
  result.seconds = 3.5f;
  result.updates = {SmallTensor(2, Codec::kSignEf), SmallTensor(3, Codec::kQ)};
  const Message u = RoundTrip(Sample(result));
  ExpectSameTensors(std::get<TaskResult>(u.body).updates, result.updates);
  EXPECT_FLOAT_EQ(std::get<TaskResult>(u.body).accuracy, 0.81f);
}

TEST(WireCodecTest, RelayFieldsRoundTripAndAgentsCarryNone) {
  Register reg{64ull << 20, 1, 12000, "fedge relay", 0, true, RelayLoad{20, 12000, 64ull << 20}};
  const Register r = std::get<Register>(RoundTrip(Sample(reg)).body);
  ASSERT_TRUE(r.relay.has_value());
  EXPECT_EQ(*r.relay, (RelayLoad{20, 12000, 64ull << 20}));
  EXPECT_FALSE(std::get<Register>(RoundTrip(Sample(Register{1, 1, 1, "v"})).body).relay);

  Heartbeat hb{5, RelayLoad{3, 900, 1 << 20}};
  EXPECT_EQ(*std::get<Heartbeat>(RoundTrip(Sample(hb)).body).relay, (RelayLoad{3, 900, 1 << 20}));
  EXPECT_FALSE(std::get<Heartbeat>(RoundTrip(Sample(Heartbeat{5})).body).relay);

  Task task;
  task.shards = {SmallTensor(0, Codec::kFp16)};
  task.relay = RelaySpec{7, kRuleTrimmedMean, 0.2f, 3.5, 50};
  const Task t = std::get<Task>(RoundTrip(Sample(task)).body);
  ASSERT_TRUE(t.relay.has_value());
  EXPECT_EQ(t.relay->agents, 7u);
  EXPECT_EQ(t.relay->rule, kRuleTrimmedMean);
  EXPECT_FLOAT_EQ(t.relay->trim_fraction, 0.2f);
  EXPECT_EQ(t.relay->max_update_norm, 3.5);
  EXPECT_EQ(t.relay->max_update_scale, 50);
  task.relay.reset();
  EXPECT_FALSE(std::get<Task>(RoundTrip(Sample(task)).body).relay);

  TaskResult partial;
  partial.samples = 1200;
  partial.updates = {SmallTensor(2, Codec::kFp32), SmallTensor(3, Codec::kFp32)};
  partial.relay = RelayPartial{5, 3, 2, {{"norm_bound", 1}, {"timed_out", 1}}, {1200, 600.5}};
  const TaskResult p = std::get<TaskResult>(RoundTrip(Sample(partial)).body);
  ASSERT_TRUE(p.relay.has_value());
  EXPECT_EQ(p.relay->agents_sampled, 5u);
  EXPECT_EQ(p.relay->agents_reported, 3u);
  EXPECT_EQ(p.relay->agents_failed, 2u);
  EXPECT_EQ(p.relay->rejections, partial.relay->rejections);
  EXPECT_EQ(p.relay->shard_weights, (std::vector<double>{1200, 600.5}));
  ExpectSameTensors(p.updates, partial.updates);

  // Counts that do not add up, weights that do not match the updates,
  // specs out of range: refused at the source and on arrival alike.
  TaskResult bad = partial;
  bad.relay->agents_reported = 5;
  EXPECT_THAT(std::string(EncodeMessage(Sample(bad)).status().message()), HasSubstr("sampled"));
  bad = partial;
  bad.relay->shard_weights = {1200};
  EXPECT_THAT(std::string(EncodeMessage(Sample(bad)).status().message()),
              HasSubstr("shard weights"));
  bad = partial;
  bad.relay->shard_weights[1] = std::nan("");
  EXPECT_FALSE(EncodeMessage(Sample(bad)).ok());
  task.relay = RelaySpec{0};
  EXPECT_THAT(std::string(EncodeMessage(Sample(task)).status().message()), HasSubstr("agents"));
  task.relay = RelaySpec{1, 3};
  EXPECT_THAT(std::string(EncodeMessage(Sample(task)).status().message()), HasSubstr("rule"));
}

std::vector<std::string> Frames(const Message& m) {
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
  EXPECT_TRUE(frames.ok()) << frames.status();
  return *frames;
}

TaskResult SampleResult() {
  TaskResult result;
  result.samples = 10;
  result.updates = {SmallTensor(0, Codec::kQ)};
  return result;
}

TEST(WireCodecTest, SharedPayloadsTravelUncopiedAfterTheCopiedOnes) {
  Task task;
  task.round_id = 3;
  task.task_id = 9;
  task.shards = {SmallTensor(0, Codec::kFp16), SmallTensor(1, Codec::kFp32),
                 SmallTensor(2, Codec::kSignEf)};
  const std::vector<WireTensor> plain = task.shards;
  // Shards 0 and 2 shared, 1 copied.
  for (int i : {0, 2}) {
    task.shards[i].shared_payload = std::make_shared<const std::string>(task.shards[i].payload);
    task.shards[i].payload.clear();
  }
  const Message m = Sample(task);
  absl::StatusOr<EncodedMessage> encoded = EncodeMessageShared(m);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  ASSERT_EQ(encoded->frames.size(), 2u);  // envelope, shard 1
  ASSERT_EQ(encoded->shared_frames.size(), 2u);
  EXPECT_EQ(encoded->shared_frames[0].buffer.get(), task.shards[0].shared_payload.get());  // no copy
  EXPECT_EQ(encoded->frames[1], plain[1].payload);
  std::vector<std::string> wire = encoded->frames;
  for (const SharedFrame& f : encoded->shared_frames) wire.push_back(f.buffer->substr(f.offset, f.size));
  absl::StatusOr<Message> back = DecodeMessage(wire);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameTensors(std::get<Task>(back->body).shards, plain);
  // The all-copied encoding carries the same message.
  absl::StatusOr<std::vector<std::string>> copied = EncodeMessage(m);
  ASSERT_TRUE(copied.ok());
  ExpectSameTensors(std::get<Task>(DecodeMessage(*copied)->body).shards, plain);
  // A shared payload of the wrong size is refused like a copied one.
  task.shards[2].shared_payload = std::make_shared<const std::string>("short");
  EXPECT_FALSE(EncodeMessageShared(Sample(task)).ok());
}

TEST(WireCodecTest, BulkTensorsTravelInBoundedFrames) {
  WireTensor big;
  big.name = "fc1.weight";
  big.shape = {100000};  // 400,000 bytes of fp32: 7 frames of at most 64 KiB
  std::vector<float> values(100000);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.001f * static_cast<float>(i % 977);
  ASSERT_TRUE(EncodeUpdate(values, {Codec::kFp32, 0, 1}, 0, nullptr, &big).ok());
  TaskResult result;
  result.task_id = 5;
  result.samples = 10;
  result.updates = {SmallTensor(0, Codec::kFp32), big};
  absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(Sample(result));
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 1u + 1u + 7u);
  for (size_t f = 1; f < frames->size(); ++f) EXPECT_LE((*frames)[f].size(), kMaxPayloadFrameBytes);
  absl::StatusOr<Message> back = DecodeMessage(*frames);
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameTensors(std::get<TaskResult>(back->body).updates, result.updates);
  // Shared, the same chunks point into the one buffer.
  Task task;
  task.shards = {big};
  task.shards[0].shared_payload = std::make_shared<const std::string>(big.payload);
  task.shards[0].payload.clear();
  absl::StatusOr<EncodedMessage> shared = EncodeMessageShared(Sample(task));
  ASSERT_TRUE(shared.ok());
  ASSERT_EQ(shared->shared_frames.size(), 7u);
  EXPECT_EQ(shared->shared_frames[1].offset, kMaxPayloadFrameBytes);
  EXPECT_EQ(shared->shared_frames[6].offset + shared->shared_frames[6].size, big.payload.size());
  // A frame missing, one too many, or two tensors claiming one frame: refused.
  std::vector<std::string> short_frames(frames->begin(), frames->end() - 1);
  EXPECT_THAT(std::string(DecodeMessage(short_frames).status().message()),
              HasSubstr("names payload frames"));
  std::vector<std::string> extra = *frames;
  extra.push_back("x");
  EXPECT_FALSE(DecodeMessage(extra).ok());
  std::vector<std::string> moved = *frames;
  std::swap(moved[2], moved[3]);  // the same bytes in another order: the values differ
  absl::StatusOr<Message> swapped = DecodeMessage(moved);
  ASSERT_TRUE(swapped.ok());
  EXPECT_NE(std::get<TaskResult>(swapped->body).updates[1].payload, big.payload);
  WireLimits tight;
  tight.max_payload_frames = 4;
  EXPECT_THAT(std::string(DecodeMessage(*frames, tight).status().message()),
              HasSubstr("payload frames, limit 4"));
}

TEST(WireCodecTest, RejectsTruncatedEnvelope) {
  std::vector<std::string> frames = Frames(Sample(Register{1 << 20, 1, 10, "v"}));
  frames[0].resize(frames[0].size() - 8);
  EXPECT_FALSE(DecodeMessage(frames).ok());
  frames[0].resize(13);
  EXPECT_THAT(std::string(DecodeMessage(frames).status().message()), HasSubstr("8-byte"));
  EXPECT_FALSE(DecodeMessage(std::vector<std::string>{}).ok());
}

TEST(WireCodecTest, RejectsWrongVersion) {
  capnp::MallocMessageBuilder builder;
  auto envelope = builder.initRoot<wire::Envelope>();
  envelope.setVersion(2);
  envelope.setDeviceId("board-1");
  envelope.getBody().initHeartbeat();
  const auto words = capnp::messageToFlatArray(builder);
  const std::string frame(reinterpret_cast<const char*>(words.asBytes().begin()),
                          words.asBytes().size());
  const absl::Status status = DecodeMessage(std::vector<std::string>{frame}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()), HasSubstr("protocol version 2"));
}

TEST(WireCodecTest, RejectsLyingLengthsAndFrames) {
  std::vector<std::string> frames = Frames(Sample(SampleResult()));
  ASSERT_EQ(frames.size(), 2u);
  std::vector<std::string> shorter = frames;
  shorter[1].pop_back();
  EXPECT_THAT(std::string(DecodeMessage(shorter).status().message()), HasSubstr("claims"));

  std::vector<std::string> extra = frames;
  extra.push_back("stowaway");
  EXPECT_THAT(std::string(DecodeMessage(extra).status().message()),
              HasSubstr("not named by the envelope"));

  std::vector<std::string> missing = {frames[0]};
  EXPECT_THAT(std::string(DecodeMessage(missing).status().message()),
              HasSubstr("payload frames 1..1 of 1 frames"));
}

TEST(WireCodecTest, RejectsShapeThatDisagreesWithPayload) {
  // Build an envelope by hand whose tensor claims a 5x3 shape over 4x3 data.
  TaskResult result = SampleResult();
  result.updates[0].shape = {5, 3};
  Message m = Sample(result);
  EXPECT_FALSE(EncodeMessage(m).ok());  // caught at the source too

  capnp::MallocMessageBuilder builder;
  auto envelope = builder.initRoot<wire::Envelope>();
  envelope.setVersion(kProtocolVersion);
  envelope.setDeviceId("board-1");
  auto r = envelope.getBody().initTaskResult();
  auto ref = r.initUpdates(1)[0];
  auto shape = ref.initShape(2);
  shape.set(0, 5);
  shape.set(1, 3);
  ref.setCodec(wire::Codec::FP32);
  ref.setFrame(1);
  ref.setByteLength(48);
  const auto words = capnp::messageToFlatArray(builder);
  std::vector<std::string> frames = {
      std::string(reinterpret_cast<const char*>(words.asBytes().begin()), words.asBytes().size()),
      std::string(48, '\0')};
  const absl::Status status = DecodeMessage(frames).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("needs 60 payload bytes"));
}

TEST(WireCodecTest, RejectsOversizedEnvelope) {
  std::vector<std::string> frames = Frames(Sample(Reject{std::string(4000, 'x')}));
  WireLimits tight;
  tight.max_envelope_bytes = 1024;
  EXPECT_EQ(DecodeMessage(frames, tight).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(WireCodecTest, RejectsBadFields) {
  Message bad_id = Sample(Heartbeat{});
  bad_id.device_id = "board 17; rm -rf";
  EXPECT_THAT(std::string(EncodeMessage(bad_id).status().message()), HasSubstr("device id"));

  TaskResult nan_loss = SampleResult();
  nan_loss.loss = std::nanf("");
  EXPECT_THAT(std::string(EncodeMessage(Sample(nan_loss)).status().message()),
              HasSubstr("loss"));

  TaskResult accuracy = SampleResult();
  accuracy.accuracy = 1.5f;
  EXPECT_FALSE(EncodeMessage(Sample(accuracy)).ok());

  Task task;
  task.uplink_codec = Codec::kQ;
  task.uplink_bits = 12;
  EXPECT_FALSE(EncodeMessage(Sample(task)).ok());
  task.uplink_bits = 4;
  task.hyper.learning_rate = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(EncodeMessage(Sample(task)).ok());
  task.hyper.learning_rate = 1e-3f;
  task.hyper.penalty_form = 2;
  EXPECT_THAT(std::string(EncodeMessage(Sample(task)).status().message()),
              HasSubstr("penalty form"));
  task.hyper.penalty_form = 0;
  task.hyper.size_accounting = 7;
  EXPECT_THAT(std::string(EncodeMessage(Sample(task)).status().message()),
              HasSubstr("size accounting"));

  TaskResult mixed_up = SampleResult();
  WireTensor mixed;
  mixed.name = "w";
  mixed.shape = {2};
  const float values[] = {0.1f, 0.2f};
  ASSERT_TRUE(EncodeMixed(values, std::vector<SliceInfo>{{2, 0.1f, 0.1f}}, &mixed).ok());
  mixed_up.updates = {mixed};
  EXPECT_THAT(std::string(EncodeMessage(Sample(mixed_up)).status().message()),
              HasSubstr("downlink"));

  EXPECT_FALSE(EncodeMessage(Sample(Register{0, 1, 1, "v"})).ok());
  EXPECT_FALSE(EncodeMessage(Sample(Welcome{1, 0})).ok());
}

// Random and mutated bytes never crash the decoder and never decode into
// something that fails validation.
TEST(WireCodecTest, GarbageNeverCrashes) {
  std::mt19937 rng(5);
  const std::vector<std::string> valid = Frames(Sample(SampleResult()));
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> frames = valid;
    if (trial % 3 == 0) {
      frames[0].assign(8 * (1 + rng() % 32), '\0');
      for (char& c : frames[0]) c = static_cast<char>(rng());
    } else {
      std::string& f = frames[rng() % frames.size()];
      for (int k = 0; k < 1 + static_cast<int>(rng() % 4) && !f.empty(); ++k) {
        f[rng() % f.size()] ^= static_cast<char>(1 + rng() % 255);
      }
    }
    absl::StatusOr<Message> m = DecodeMessage(frames);
    if (m.ok()) {
      ++accepted;
      const std::vector<WireTensor>* tensors = nullptr;
      if (auto* r = std::get_if<TaskResult>(&m->body)) tensors = &r->updates;
      if (tensors != nullptr) {
        for (const WireTensor& t : *tensors) EXPECT_TRUE(ValidateTensor(t).ok());
      }
    }
  }
  // Flips in payload bytes are legitimately undetectable; the rest is not.
  EXPECT_LT(accepted, 3000);
}

}  // namespace
}  // namespace fedge
