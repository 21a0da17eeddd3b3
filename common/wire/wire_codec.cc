#include "common/wire/wire_codec.h"

#include <cmath>
#include <cstring>
#include <set>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "capnp/message.h"
#include "capnp/serialize.h"
#include "common/status/capnp_status.h"
#include "common/status/status_macros.h"
#include "common/codec/update_codec.h"
#include "common/wire/wire.capnp.h"

namespace fedge {
namespace {

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(what);
}

absl::Status CheckText(absl::string_view field, absl::string_view text,
                       size_t max_bytes) {
  if (text.size() > max_bytes) {
    return Invalid(absl::StrCat(field, " is ", text.size(), " bytes, limit ", max_bytes));
  }
  for (unsigned char c : text) {
    if (c < 0x20 && c != '\n' && c != '\t') {
      return Invalid(absl::StrCat(field, " contains control character ", int{c}));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckDeviceId(absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return Invalid(absl::StrCat("device id must be 1..64 characters, got ", id.size()));
  }
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
                    c == ':';
    if (!ok) {
      return Invalid(absl::StrCat("device id '", id,
                                  "' has a character outside [A-Za-z0-9._:-]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckRange(absl::string_view field, double value, double lo, double hi) {
  if (!std::isfinite(value) || value < lo || value > hi) {
    return Invalid(absl::StrCat(field, " = ", value, " is outside [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckTensors(absl::string_view what, const std::vector<WireTensor>& tensors,
                          bool allow_mixed, const WireLimits& limits) {
  if (tensors.size() > limits.max_tensors) {
    return Invalid(absl::StrCat(what, ": ", tensors.size(), " tensors, limit ",
                                limits.max_tensors));
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const WireTensor& t = tensors[i];
    RETURN_IF_ERROR(Annotate(CheckText("tensor name", t.name, 128),
                             absl::StrCat(what, " tensor ", i)));
    if (!allow_mixed && t.codec == Codec::kMixed) {
      return Invalid(absl::StrCat(what, " tensor ", i, ": mixed is a downlink encoding"));
    }
    RETURN_IF_ERROR(Annotate(ValidateTensor(t),
                             absl::StrCat(what, " tensor ", i, " ('", t.name, "')")));
  }
  return absl::OkStatus();
}

absl::Status CheckHyper(const Hyper& h) {
  RETURN_IF_ERROR(CheckRange("learning rate", h.learning_rate, 1e-9, 10));
  RETURN_IF_ERROR(CheckRange("batch size", h.batch_size, 1, 65536));
  RETURN_IF_ERROR(CheckRange("local steps", h.local_steps, 1, 1e7));
  RETURN_IF_ERROR(CheckRange("quantizer update interval", h.quantizer_every, 1, 1e6));
  RETURN_IF_ERROR(CheckRange("penalty scale", h.penalty_scale, 0, 1));
  RETURN_IF_ERROR(CheckRange("weight budget kB", h.weight_budget_kb, 0, 1e9));
  RETURN_IF_ERROR(CheckRange("activation budget kB", h.activation_budget_kb, 0, 1e9));
  RETURN_IF_ERROR(CheckRange("lambda_w", h.lambda_w, 0, 1e3));
  RETURN_IF_ERROR(CheckRange("lambda_a", h.lambda_a, 0, 1e3));
  RETURN_IF_ERROR(CheckRange("penalty form", h.penalty_form, 0, 1));
  return CheckRange("size accounting", h.size_accounting, 0, 1);
}

constexpr double kMaxRelayAgents = 1e7;

absl::Status CheckRelayLoad(const RelayLoad& load) {
  RETURN_IF_ERROR(CheckRange("relay agents", load.agents, 0, kMaxRelayAgents));
  RETURN_IF_ERROR(CheckRange("relay samples", static_cast<double>(load.samples), 0, 1e15));
  return CheckRange("relay memory", static_cast<double>(load.min_memory_bytes), 0, 1e15);
}

absl::Status CheckRelaySpec(const RelaySpec& spec) {
  RETURN_IF_ERROR(CheckRange("relay spec agents", spec.agents, 1, kMaxRelayAgents));
  RETURN_IF_ERROR(CheckRange("relay spec rule", spec.rule, 0, 2));
  RETURN_IF_ERROR(CheckRange("relay spec trim fraction", spec.trim_fraction, 0, 0.49));
  RETURN_IF_ERROR(CheckRange("relay spec norm bound", spec.max_update_norm, 0, 1e30));
  return CheckRange("relay spec magnitude bound", spec.max_update_scale, 1, 1e30);
}

absl::Status CheckPartial(const RelayPartial& p, size_t updates, const WireLimits& limits) {
  RETURN_IF_ERROR(CheckRange("relay agents sampled", p.agents_sampled, 0, kMaxRelayAgents));
  if (static_cast<uint64_t>(p.agents_reported) + p.agents_failed > p.agents_sampled) {
    return Invalid(absl::StrCat("relay partial: ", p.agents_reported, " reported and ",
                                p.agents_failed, " failed of ", p.agents_sampled, " sampled"));
  }
  if (p.shard_weights.size() != updates) {
    return Invalid(absl::StrCat("relay partial: ", p.shard_weights.size(), " shard weights for ",
                                updates, " updates"));
  }
  for (double w : p.shard_weights) RETURN_IF_ERROR(CheckRange("relay shard weight", w, 1e-9, 1e15));
  if (p.rejections.size() > 64) {
    return Invalid(absl::StrCat("relay partial: ", p.rejections.size(), " rejection reasons"));
  }
  for (const auto& [reason, count] : p.rejections) {
    RETURN_IF_ERROR(CheckText("relay rejection reason", reason, 64));
    RETURN_IF_ERROR(CheckRange("relay rejection count", count, 0, p.agents_sampled));
  }
  (void)limits;
  return absl::OkStatus();
}

struct BodyValidator {
  const WireLimits& limits;

  absl::Status operator()(const Register& r) const {
    RETURN_IF_ERROR(CheckRange("memory budget", static_cast<double>(r.memory_budget_bytes),
                               1, 1e15));
    RETURN_IF_ERROR(CheckRange("cores", r.cores, 1, 1024));
    RETURN_IF_ERROR(CheckRange("samples", static_cast<double>(r.samples), 0,
                               r.relay ? 1e15 : 1e10));
    if (r.relay) RETURN_IF_ERROR(CheckRelayLoad(*r.relay));
    return CheckText("agent version", r.agent_version, 64);
  }
  absl::Status operator()(const Heartbeat& h) const {
    return h.relay ? CheckRelayLoad(*h.relay) : absl::OkStatus();
  }
  absl::Status operator()(const TaskResult& r) const {
    RETURN_IF_ERROR(CheckRange("loss", r.loss, 0, 1e6));
    RETURN_IF_ERROR(CheckRange("accuracy", r.accuracy, 0, 1));
    RETURN_IF_ERROR(CheckRange("seconds", r.seconds, 0, 1e7));
    RETURN_IF_ERROR(CheckRange("samples", static_cast<double>(r.samples), 0,
                               r.relay ? 1e15 : 1e10));
    if (r.relay) RETURN_IF_ERROR(CheckPartial(*r.relay, r.updates.size(), limits));
    return CheckTensors("TaskResult", r.updates, /*allow_mixed=*/false, limits);
  }
  absl::Status operator()(const TaskFailed& f) const {
    return CheckText("failure reason", f.reason, limits.max_text_bytes);
  }
  absl::Status operator()(const Welcome& w) const {
    return CheckRange("heartbeat interval ms", w.heartbeat_interval_ms, 10, 3.6e6);
  }
  absl::Status operator()(const Task& t) const {
    if (static_cast<int>(t.phase) > 2) {
      return Invalid(absl::StrCat("unknown phase ", static_cast<int>(t.phase)));
    }
    RETURN_IF_ERROR(CheckRange("deadline ms", t.deadline_ms, 1, 8.64e7));
    RETURN_IF_ERROR(CheckHyper(t.hyper));
    if (static_cast<int>(t.uplink_codec) > 3) {
      return Invalid(absl::StrCat("uplink codec ", static_cast<int>(t.uplink_codec),
                                  " is not fp32, fp16, q or sign-ef"));
    }
    if (t.uplink_codec == Codec::kQ && (t.uplink_bits < 2 || t.uplink_bits > 8)) {
      return Invalid(absl::StrCat("uplink q codec needs 2..8 bits, got ",
                                  int{t.uplink_bits}));
    }
    if (t.relay) RETURN_IF_ERROR(CheckRelaySpec(*t.relay));
    return CheckTensors("Task", t.shards, /*allow_mixed=*/true, limits);
  }
  absl::Status operator()(const NoTask& n) const {
    return CheckRange("retry after ms", n.retry_after_ms, 0, 3.6e6);
  }
  absl::Status operator()(const ResultAck& a) const {
    return CheckText("acknowledgement reason", a.reason, limits.max_text_bytes);
  }
  absl::Status operator()(const Reject& r) const {
    return CheckText("reject reason", r.reason, limits.max_text_bytes);
  }
};

const std::vector<WireTensor>* TensorsOf(const Body& body) {
  if (const auto* task = std::get_if<Task>(&body)) return &task->shards;
  if (const auto* result = std::get_if<TaskResult>(&body)) return &result->updates;
  return nullptr;
}

// --- encoding -------------------------------------------------------------

size_t Chunks(size_t bytes) {
  return std::max<size_t>(1, (bytes + kMaxPayloadFrameBytes - 1) / kMaxPayloadFrameBytes);
}

// Each tensor's bytes in chunks of kMaxPayloadFrameBytes; copied payloads
// take frames 1..k in tensor order, shared ones the frames after them, also
// in order.
void WriteTensors(const std::vector<WireTensor>& tensors,
                  capnp::List<wire::TensorRef>::Builder list, EncodedMessage* out) {
  size_t copied = 0;
  for (const WireTensor& t : tensors) copied += t.shared_payload ? 0 : Chunks(t.payload.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const WireTensor& t = tensors[i];
    auto ref = list[i];
    ref.setLayer(t.layer);
    ref.setName(t.name);
    auto shape = ref.initShape(t.shape.size());
    for (size_t d = 0; d < t.shape.size(); ++d) shape.set(d, t.shape[d]);
    ref.setCodec(static_cast<wire::Codec>(t.codec));
    ref.setBits(t.bits);
    auto slices = ref.initSlices(t.slices.size());
    for (size_t s = 0; s < t.slices.size(); ++s) {
      slices[s].setBits(t.slices[s].bits);
      slices[s].setStep(t.slices[s].step);
      slices[s].setRange(t.slices[s].range);
    }
    const std::string& bytes = t.bytes();
    const size_t chunks = Chunks(bytes.size());
    ref.setByteLength(bytes.size());
    ref.setFrameCount(static_cast<uint32_t>(chunks));
    ref.setFrame(static_cast<uint32_t>(t.shared_payload ? 1 + copied + out->shared_frames.size()
                                                        : out->frames.size()));
    for (size_t c = 0; c < chunks; ++c) {
      const size_t offset = c * kMaxPayloadFrameBytes;
      const size_t size = std::min(kMaxPayloadFrameBytes, bytes.size() - offset);
      if (t.shared_payload) {
        out->shared_frames.push_back({t.shared_payload, offset, size});
      } else {
        out->frames.push_back(bytes.substr(offset, size));
      }
    }
  }
}

void WriteHyper(const Hyper& h, wire::Hyper::Builder b) {
  b.setLearningRate(h.learning_rate);
  b.setBatchSize(h.batch_size);
  b.setLocalSteps(h.local_steps);
  b.setQuantizerEvery(h.quantizer_every);
  b.setPenaltyScale(h.penalty_scale);
  b.setWeightBudgetKb(h.weight_budget_kb);
  b.setActivationBudgetKb(h.activation_budget_kb);
  b.setLambdaW(h.lambda_w);
  b.setLambdaA(h.lambda_a);
  b.setPenaltyForm(h.penalty_form);
  b.setSizeAccounting(h.size_accounting);
}

void WriteRelayLoad(const RelayLoad& load, wire::RelayLoad::Builder b) {
  b.setAgents(load.agents);
  b.setSamples(load.samples);
  b.setMinMemoryBytes(load.min_memory_bytes);
}

RelayLoad ReadRelayLoad(wire::RelayLoad::Reader r) {
  return RelayLoad{r.getAgents(), r.getSamples(), r.getMinMemoryBytes()};
}

struct BodyWriter {
  mutable wire::Envelope::Body::Builder body;
  EncodedMessage* frames;

  void operator()(const Register& r) const {
    auto b = body.initRegister();
    b.setMemoryBudgetBytes(r.memory_budget_bytes);
    b.setCores(r.cores);
    b.setSamples(r.samples);
    b.setAgentVersion(r.agent_version);
    b.setHasTask(r.has_task);
    b.setNewConnection(r.new_connection);
    if (r.relay) WriteRelayLoad(*r.relay, b.initRelay());
  }
  void operator()(const Heartbeat& h) const {
    auto b = body.initHeartbeat();
    b.setBusyTask(h.busy_task);
    if (h.relay) WriteRelayLoad(*h.relay, b.initRelay());
  }
  void operator()(const TaskResult& r) const {
    auto b = body.initTaskResult();
    b.setRoundId(r.round_id);
    b.setTaskId(r.task_id);
    b.setModelVersion(r.model_version);
    b.setSamples(r.samples);
    b.setLoss(r.loss);
    b.setAccuracy(r.accuracy);
    b.setPeakMemoryBytes(r.peak_memory_bytes);
    b.setProcessPeakRssBytes(r.process_peak_rss_bytes);
    b.setSeconds(r.seconds);
    WriteTensors(r.updates, b.initUpdates(r.updates.size()), frames);
    if (r.relay) {
      auto p = b.initRelay();
      p.setAgentsSampled(r.relay->agents_sampled);
      p.setAgentsReported(r.relay->agents_reported);
      p.setAgentsFailed(r.relay->agents_failed);
      auto reasons = p.initRejections(r.relay->rejections.size());
      for (size_t i = 0; i < r.relay->rejections.size(); ++i) {
        reasons[i].setReason(r.relay->rejections[i].first);
        reasons[i].setCount(r.relay->rejections[i].second);
      }
      auto weights = p.initShardWeights(r.relay->shard_weights.size());
      for (size_t i = 0; i < r.relay->shard_weights.size(); ++i) {
        weights.set(i, r.relay->shard_weights[i]);
      }
    }
  }
  void operator()(const TaskFailed& f) const {
    auto b = body.initTaskFailed();
    b.setRoundId(f.round_id);
    b.setTaskId(f.task_id);
    b.setReason(f.reason);
  }
  void operator()(const Welcome& w) const {
    auto b = body.initWelcome();
    b.setSessionId(w.session_id);
    b.setHeartbeatIntervalMs(w.heartbeat_interval_ms);
  }
  void operator()(const Task& t) const {
    auto b = body.initTask();
    b.setRoundId(t.round_id);
    b.setTaskId(t.task_id);
    b.setModelVersion(t.model_version);
    b.setPhase(static_cast<wire::Phase>(t.phase));
    b.setDeadlineMs(t.deadline_ms);
    WriteHyper(t.hyper, b.initHyper());
    b.setUplinkCodec(static_cast<wire::Codec>(t.uplink_codec));
    b.setUplinkBits(t.uplink_bits);
    b.setTrainableFrom(t.trainable_from);
    b.setSeed(t.seed);
    WriteTensors(t.shards, b.initShards(t.shards.size()), frames);
    if (t.relay) {
      auto spec = b.initRelay();
      spec.setAgents(t.relay->agents);
      spec.setRule(t.relay->rule);
      spec.setTrimFraction(t.relay->trim_fraction);
      spec.setMaxUpdateNorm(t.relay->max_update_norm);
      spec.setMaxUpdateScale(t.relay->max_update_scale);
    }
  }
  void operator()(const NoTask& n) const { body.initNoTask().setRetryAfterMs(n.retry_after_ms); }
  void operator()(const Reject& r) const { body.initReject().setReason(r.reason); }
  void operator()(const ResultAck& a) const {
    auto ack = body.initResultAck();
    ack.setTaskId(a.task_id);
    ack.setAccepted(a.accepted);
    ack.setReason(a.reason);
  }
};

// --- decoding -------------------------------------------------------------

absl::StatusOr<std::vector<WireTensor>> ReadTensors(
    capnp::List<wire::TensorRef>::Reader list, absl::Span<const std::string> frames,
    std::set<uint32_t>* used, const WireLimits& limits) {
  if (list.size() > limits.max_tensors) {
    return Invalid(absl::StrCat(list.size(), " tensors, limit ", limits.max_tensors));
  }
  std::vector<WireTensor> out(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    auto ref = list[i];
    WireTensor& t = out[i];
    t.layer = ref.getLayer();
    t.name = ref.getName().cStr();
    if (ref.getShape().size() > 8) {
      return Invalid(absl::StrCat("tensor ", i, ": rank ", ref.getShape().size(), " > 8"));
    }
    for (uint32_t d : ref.getShape()) t.shape.push_back(d);
    const uint16_t codec = static_cast<uint16_t>(ref.getCodec());
    if (codec > static_cast<uint16_t>(Codec::kMixed)) {
      return Invalid(absl::StrCat("tensor ", i, ": unknown codec ", codec));
    }
    t.codec = static_cast<Codec>(codec);
    t.bits = ref.getBits();
    if (ref.getSlices().size() > (1u << 20)) {
      return Invalid(absl::StrCat("tensor ", i, ": too many slices"));
    }
    for (auto s : ref.getSlices()) t.slices.push_back({s.getBits(), s.getStep(), s.getRange()});
    const uint64_t frame = ref.getFrame();
    const uint64_t count = std::max<uint32_t>(1, ref.getFrameCount());
    if (frame == 0 || frame + count > frames.size()) {
      return Invalid(absl::StrCat("tensor ", i, " names payload frames ", frame, "..",
                                  frame + count - 1, " of ", frames.size(), " frames"));
    }
    uint64_t total = 0;
    for (uint64_t f = frame; f < frame + count; ++f) {
      if (!used->insert(static_cast<uint32_t>(f)).second) {
        return Invalid(absl::StrCat("tensor ", i, " reuses payload frame ", f));
      }
      total += frames[f].size();
    }
    if (ref.getByteLength() != total) {
      return Invalid(absl::StrCat("tensor ", i, " claims ", ref.getByteLength(),
                                  " bytes but its frames hold ", total));
    }
    t.payload.reserve(total);
    for (uint64_t f = frame; f < frame + count; ++f) t.payload += frames[f];
  }
  return out;
}

Hyper ReadHyper(wire::Hyper::Reader r) {
  Hyper h;
  h.learning_rate = r.getLearningRate();
  h.batch_size = r.getBatchSize();
  h.local_steps = r.getLocalSteps();
  h.quantizer_every = r.getQuantizerEvery();
  h.penalty_scale = r.getPenaltyScale();
  h.weight_budget_kb = r.getWeightBudgetKb();
  h.activation_budget_kb = r.getActivationBudgetKb();
  h.lambda_w = r.getLambdaW();
  h.lambda_a = r.getLambdaA();
  h.penalty_form = r.getPenaltyForm();
  h.size_accounting = r.getSizeAccounting();
  return h;
}

absl::StatusOr<Body> ReadBody(wire::Envelope::Body::Reader body,
                              absl::Span<const std::string> frames,
                              std::set<uint32_t>* used, const WireLimits& limits) {
  switch (body.which()) {
    case wire::Envelope::Body::REGISTER: {
      auto r = body.getRegister();
      Register out;
      out.memory_budget_bytes = r.getMemoryBudgetBytes();
      out.cores = r.getCores();
      out.samples = r.getSamples();
      out.agent_version = r.getAgentVersion().cStr();
      out.has_task = r.getHasTask();
      out.new_connection = r.getNewConnection();
      if (r.hasRelay()) out.relay = ReadRelayLoad(r.getRelay());
      return Body(out);
    }
    case wire::Envelope::Body::HEARTBEAT: {
      auto h = body.getHeartbeat();
      Heartbeat out{h.getBusyTask()};
      if (h.hasRelay()) out.relay = ReadRelayLoad(h.getRelay());
      return Body(out);
    }
    case wire::Envelope::Body::TASK_RESULT: {
      auto r = body.getTaskResult();
      TaskResult out;
      out.round_id = r.getRoundId();
      out.task_id = r.getTaskId();
      out.model_version = r.getModelVersion();
      out.samples = r.getSamples();
      out.loss = r.getLoss();
      out.accuracy = r.getAccuracy();
      out.peak_memory_bytes = r.getPeakMemoryBytes();
      out.process_peak_rss_bytes = r.getProcessPeakRssBytes();
      out.seconds = r.getSeconds();
      ASSIGN_OR_RETURN(out.updates, ReadTensors(r.getUpdates(), frames, used, limits));
      if (r.hasRelay()) {
        auto p = r.getRelay();
        if (p.getRejections().size() > 64 || p.getShardWeights().size() > limits.max_tensors) {
          return Invalid("relay partial with too many rejection reasons or shard weights");
        }
        RelayPartial& partial = out.relay.emplace();  // filled in place
        partial.agents_sampled = p.getAgentsSampled();
        partial.agents_reported = p.getAgentsReported();
        partial.agents_failed = p.getAgentsFailed();
        for (auto reason : p.getRejections()) {
          partial.rejections.emplace_back(reason.getReason().cStr(), reason.getCount());
        }
        for (double w : p.getShardWeights()) partial.shard_weights.push_back(w);
      }
      return Body(std::move(out));
    }
    case wire::Envelope::Body::TASK_FAILED: {
      auto f = body.getTaskFailed();
      return Body(TaskFailed{f.getRoundId(), f.getTaskId(), f.getReason().cStr()});
    }
    case wire::Envelope::Body::WELCOME: {
      auto w = body.getWelcome();
      return Body(Welcome{w.getSessionId(), w.getHeartbeatIntervalMs()});
    }
    case wire::Envelope::Body::TASK: {
      auto t = body.getTask();
      Task out;
      out.round_id = t.getRoundId();
      out.task_id = t.getTaskId();
      out.model_version = t.getModelVersion();
      out.phase = static_cast<Phase>(static_cast<uint16_t>(t.getPhase()));
      out.deadline_ms = t.getDeadlineMs();
      out.hyper = ReadHyper(t.getHyper());
      out.uplink_codec = static_cast<Codec>(static_cast<uint16_t>(t.getUplinkCodec()));
      out.uplink_bits = t.getUplinkBits();
      out.trainable_from = t.getTrainableFrom();
      out.seed = t.getSeed();
      if (t.hasRelay()) {
        auto spec = t.getRelay();
        out.relay = RelaySpec{spec.getAgents(), spec.getRule(), spec.getTrimFraction(),
                              spec.getMaxUpdateNorm(), spec.getMaxUpdateScale()};
      }
      if (static_cast<uint16_t>(t.getPhase()) > 2 ||
          static_cast<uint16_t>(t.getUplinkCodec()) > 4) {
        return Invalid("task carries an unknown phase or codec");
      }
      ASSIGN_OR_RETURN(out.shards, ReadTensors(t.getShards(), frames, used, limits));
      return Body(std::move(out));
    }
    case wire::Envelope::Body::NO_TASK:
      return Body(NoTask{body.getNoTask().getRetryAfterMs()});
    case wire::Envelope::Body::REJECT:
      return Body(Reject{body.getReject().getReason().cStr()});
    case wire::Envelope::Body::RESULT_ACK: {
      const auto ack = body.getResultAck();
      return Body(ResultAck{ack.getTaskId(), ack.getAccepted(), ack.getReason().cStr()});
    }
  }
  return Invalid(absl::StrCat("unknown message type ", static_cast<int>(body.which())));
}

}  // namespace

absl::Status ValidateMessage(const Message& message, size_t payload_frames,
                             const WireLimits& limits) {
  if (message.version != kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "protocol version ", message.version, ", this build speaks ", kProtocolVersion));
  }
  RETURN_IF_ERROR(CheckDeviceId(message.device_id));
  const std::vector<WireTensor>* tensors = TensorsOf(message.body);
  const size_t used = tensors == nullptr ? 0 : tensors->size();
  if (used != payload_frames) {
    return Invalid(absl::StrCat(BodyName(message.body), " uses ", used,
                                " payload frames, message has ", payload_frames));
  }
  size_t total = 0;
  if (tensors != nullptr) {
    for (const WireTensor& t : *tensors) total += t.bytes().size();
  }
  if (total > limits.max_total_payload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "payload of ", total, " bytes exceeds the limit of ", limits.max_total_payload_bytes));
  }
  return Annotate(std::visit(BodyValidator{limits}, message.body), BodyName(message.body));
}

absl::StatusOr<std::vector<std::string>> EncodeMessage(const Message& message) {
  ASSIGN_OR_RETURN(EncodedMessage encoded, EncodeMessageShared(message));
  CopySharedFrames(&encoded.shared_frames, &encoded.frames);
  return std::move(encoded.frames);
}

absl::StatusOr<EncodedMessage> EncodeMessageShared(const Message& message) {
  const std::vector<WireTensor>* tensors = TensorsOf(message.body);
  RETURN_IF_ERROR(ValidateMessage(message, tensors == nullptr ? 0 : tensors->size()));
  EncodedMessage out;
  out.frames.resize(1);
  RETURN_IF_ERROR(CallCapnp("encoding message", [&] {
    capnp::MallocMessageBuilder builder;
    auto envelope = builder.initRoot<wire::Envelope>();
    envelope.setVersion(message.version);
    envelope.setDeviceId(message.device_id);
    envelope.setSessionId(message.session_id);
    std::visit(BodyWriter{envelope.getBody(), &out}, message.body);
    const kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
    const auto bytes = words.asBytes();
    out.frames[0].assign(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<Message> DecodeMessage(absl::Span<const std::string> frames,
                                      const WireLimits& limits) {
  if (frames.empty()) return Invalid("empty message: no envelope frame");
  const std::string& head = frames[0];
  if (head.size() > limits.max_envelope_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "envelope of ", head.size(), " bytes exceeds the limit of ", limits.max_envelope_bytes));
  }
  if (head.empty() || head.size() % sizeof(capnp::word) != 0) {
    return Invalid(absl::StrCat("envelope of ", head.size(),
                                " bytes is not a whole number of 8-byte words"));
  }
  if (frames.size() - 1 > limits.max_payload_frames) {
    return Invalid(absl::StrCat(frames.size() - 1, " payload frames, limit ",
                                limits.max_payload_frames));
  }
  // Cap'n Proto reads words in place: copy the frame to aligned memory.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(head.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), head.data(), head.size());
  Message message;
  RETURN_IF_ERROR(CallCapnp("decoding envelope", [&]() -> absl::Status {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = 4 * words.size() + 64;
    options.nestingLimit = 16;
    capnp::FlatArrayMessageReader reader(words.asPtr(), options);
    if (reader.getEnd() != words.end()) {
      return Invalid(absl::StrCat("envelope has ", (words.end() - reader.getEnd()) * 8,
                                  " trailing bytes"));
    }
    auto envelope = reader.getRoot<wire::Envelope>();
    message.version = envelope.getVersion();
    if (message.version != kProtocolVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "protocol version ", message.version, ", this build speaks ", kProtocolVersion));
    }
    message.device_id = envelope.getDeviceId().cStr();
    message.session_id = envelope.getSessionId();
    std::set<uint32_t> used;
    ASSIGN_OR_RETURN(message.body, ReadBody(envelope.getBody(), frames, &used, limits));
    if (used.size() != frames.size() - 1) {
      return Invalid(absl::StrCat(frames.size() - 1 - used.size(),
                                  " payload frames are not named by the envelope"));
    }
    return absl::OkStatus();
  }));
  // Every payload frame was named once, by a tensor's run of frames.
  const std::vector<WireTensor>* tensors = TensorsOf(message.body);
  RETURN_IF_ERROR(ValidateMessage(message, tensors == nullptr ? 0 : tensors->size(), limits));
  return message;
}

}  // namespace fedge
