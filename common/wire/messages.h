#ifndef FEDGE_COMMON_MESSAGES_H_
#define FEDGE_COMMON_MESSAGES_H_

// The protocol's messages as plain C++ values (design 4.4). wire_codec.h
// turns them into ZeroMQ frames (a Cap'n Proto envelope plus raw payload
// frames) and back, validating every field. Nothing here depends on Cap'n
// Proto or ZeroMQ.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace fedge {

inline constexpr uint16_t kProtocolVersion = 1;

enum class Phase : uint8_t { kPretrain = 0, kLearnPrecision = 1, kFinetune = 2 };

// How a tensor's values are encoded in its payload frame. See
// update_codec.h for the exact byte layouts.
enum class Codec : uint8_t {
  kFp32 = 0,
  kFp16 = 1,
  kQ = 2,       // K-bit stochastic rounding, one scale per slice
  kSignEf = 3,  // 1-bit signs, one L1 scale per slice (error feedback)
  kMixed = 4,   // per-slice integer codes at the slice's bit-width (downlink)
};

const char* PhaseName(Phase phase);
const char* CodecName(Codec codec);

// Quantization parameters of one slice (an output channel, or a whole
// tensor): bits and step for kMixed (range = the quantizer's xmax), the
// scale in `step` for kQ and kSignEf.
struct SliceInfo {
  uint8_t bits = 0;
  float step = 0;
  float range = 0;
  bool operator==(const SliceInfo& o) const {
    return bits == o.bits && step == o.step && range == o.range;
  }
};

// A tensor and its encoded bytes. On the wire, the header travels in the
// envelope and `payload` in a frame of its own.
struct WireTensor {
  uint32_t layer = 0;
  std::string name;
  std::vector<uint32_t> shape;
  Codec codec = Codec::kFp32;
  uint8_t bits = 0;  // kQ: K
  std::vector<SliceInfo> slices;
  std::string payload;
  // When set, the encoded bytes instead of `payload` (which is then empty):
  // one buffer that many messages carry without a copy (the coordinator's
  // model shards for one round's tasks). Decoded tensors never have it.
  std::shared_ptr<const std::string> shared_payload;

  const std::string& bytes() const { return shared_payload ? *shared_payload : payload; }
  int64_t numel() const;
};

// A relay aggregator's load: the agents connected to it.
struct RelayLoad {
  uint32_t agents = 0;
  uint64_t samples = 0;
  uint64_t min_memory_bytes = 0;  // the smallest memory budget among them
  bool operator==(const RelayLoad& o) const {
    return agents == o.agents && samples == o.samples && min_memory_bytes == o.min_memory_bytes;
  }
};

struct Register {
  uint64_t memory_budget_bytes = 0;
  uint16_t cores = 1;
  uint64_t samples = 0;
  std::string agent_version;
  // A task the agent already holds (running, queued, or its result not yet
  // acknowledged), so the coordinator need not send it again; 0: none.
  uint64_t has_task = 0;
  // The first Register on a new connection (a new process, or the link was
  // re-established): whatever the coordinator had queued on the old one is
  // lost. A Register on the same connection (the agent gave up waiting)
  // loses nothing: what was sent is still on its way.
  bool new_connection = false;
  // Set by a relay (enrolled on the root as one); unset for an agent.
  std::optional<RelayLoad> relay;
};

struct Heartbeat {
  uint64_t busy_task = 0;  // 0 when idle
  std::optional<RelayLoad> relay;  // a relay's current load
};

// Aggregation rules as the relay spec carries them (coordinator/aggregator.h).
inline constexpr uint8_t kRuleFedAvg = 0, kRuleMedian = 1, kRuleTrimmedMean = 2;

// With a task for a relay: how many of its agents to sample, and how to
// validate and combine their results.
struct RelaySpec {
  uint32_t agents = 1;
  uint8_t rule = kRuleFedAvg;
  float trim_fraction = 0.1f;
  double max_update_norm = 0;
  double max_update_scale = 100;
};

// A relay's result: its agents' updates combined into one partial.
struct RelayPartial {
  uint32_t agents_sampled = 0;
  uint32_t agents_reported = 0;
  uint32_t agents_failed = 0;  // failed, lost, timed out or rejected
  std::vector<std::pair<std::string, uint32_t>> rejections;  // reason label, count
  std::vector<double> shard_weights;  // the weight behind each update, in order
};

struct Welcome {
  uint64_t session_id = 0;
  uint32_t heartbeat_interval_ms = 1000;
};

struct Hyper {
  float learning_rate = 1e-3f;
  uint32_t batch_size = 64;
  uint32_t local_steps = 100;
  uint32_t quantizer_every = 1;
  float penalty_scale = 0;
  float weight_budget_kb = 0;
  float activation_budget_kb = 0;
  float lambda_w = 1.0f;
  float lambda_a = 1.0f;
  uint8_t penalty_form = 0;     // models/quant PenaltyForm: 0 relative, 1 absolute
  uint8_t size_accounting = 0;  // models/quant SizeAccounting: 0 reference, 1 project
};

struct Task {
  uint64_t round_id = 0;
  uint64_t task_id = 0;
  uint64_t model_version = 0;
  Phase phase = Phase::kPretrain;
  uint32_t deadline_ms = 60000;
  Hyper hyper;
  Codec uplink_codec = Codec::kSignEf;
  uint8_t uplink_bits = 0;
  uint32_t trainable_from = 0;
  std::vector<WireTensor> shards;
  uint64_t seed = 0;
  std::optional<RelaySpec> relay;  // set only in a task for a relay
};

struct TaskResult {
  uint64_t round_id = 0;
  uint64_t task_id = 0;
  uint64_t model_version = 0;
  uint64_t samples = 0;
  float loss = 0;
  float accuracy = 0;
  uint64_t peak_memory_bytes = 0;       // training allocations (counting allocator)
  uint64_t process_peak_rss_bytes = 0;  // the whole process (0: unknown)
  float seconds = 0;
  std::vector<WireTensor> updates;
  std::optional<RelayPartial> relay;  // set only in a relay's result
};

struct TaskFailed {
  uint64_t round_id = 0;
  uint64_t task_id = 0;
  std::string reason;
};

struct NoTask {
  uint32_t retry_after_ms = 1000;
};

struct Reject {
  std::string reason;
};

// The coordinator's answer to every TaskResult: the agent keeps a result and
// sends it again (after a reconnect or a re-registration) until it is
// acknowledged, accepted or not.
struct ResultAck {
  uint64_t task_id = 0;
  bool accepted = false;
  std::string reason;  // why not, when not accepted
};

using Body = std::variant<Register, Heartbeat, TaskResult, TaskFailed, Welcome,
                          Task, NoTask, Reject, ResultAck>;

struct Message {
  uint16_t version = kProtocolVersion;
  std::string device_id;
  uint64_t session_id = 0;
  Body body;
};

// "Register", "Task", ...
const char* BodyName(const Body& body);

}  // namespace fedge

#endif  // FEDGE_COMMON_MESSAGES_H_
