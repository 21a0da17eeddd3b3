@0xecfb0e127ea77302;
# The coordinator <-> agent protocol. Every ZeroMQ message is one Envelope
# frame followed by zero or more raw payload frames holding bulk tensors;
# a TensorRef names its payload frames by index (1 = first frame after the
# envelope) and states its exact byte length, which the reader checks.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("fedge::wire");

# Bumped on any incompatible change; peers reject other versions.
const protocolVersion :UInt16 = 1;

enum Phase {
  pretrain @0;        # fixed precision, quantizers calibrated then frozen
  learnPrecision @1;  # step sizes and ranges learned, size penalty on
  finetune @2;        # bit-widths frozen, penalty off
}

enum Codec {
  fp32 @0;
  fp16 @1;
  q @2;       # K-bit stochastic rounding, one scale per slice; K in `bits`
  signEf @3;  # 1-bit sign, per-slice L1 scale, error feedback on the agent
  mixed @4;   # downlink only: per-slice integer codes at their bit-width
}

struct Slice {
  bits @0 :UInt8;
  step @1 :Float32;    # quantizer step d (mixed) or scale (q, signEf)
  range @2 :Float32;   # quantizer range xmax (mixed); 0 otherwise
}

# Describes one tensor whose bytes travel in a payload frame.
struct TensorRef {
  layer @0 :UInt32;
  name @1 :Text;                 # e.g. "weight", "beta", "act_step"
  shape @2 :List(UInt32);
  codec @3 :Codec;
  bits @4 :UInt8;                # for q
  slices @5 :List(Slice);        # one per output channel or one per tensor
  frame @6 :UInt32;
  byteLength @7 :UInt64;
  # The bytes span this many payload frames, from `frame` on, in order
  # (0 or 1: one frame). Bulk tensors travel in frames of at most 64 KiB,
  # so a CURVE link encrypts and holds one such frame at a time, not a whole
  # tensor per connection.
  frameCount @8 :UInt32;
}

struct Register {
  memoryBudgetBytes @0 :UInt64;
  cores @1 :UInt16;
  samples @2 :UInt64;
  agentVersion @3 :Text;
  hasTask @4 :UInt64;    # a task it holds (running, or its result unacknowledged); 0: none
  newConnection @5 :Bool;  # first Register on a new connection: what was queued on the old one is lost
  # Set by a relay aggregator (enrolled on the root as a relay): the agents
  # behind it. Its memoryBudgetBytes is then the smallest of theirs, its
  # samples their sum.
  relay @6 :RelayLoad;
}

struct RelayLoad {
  agents @0 :UInt32;
  samples @1 :UInt64;
  minMemoryBytes @2 :UInt64;   # the smallest memory budget among the agents
}

struct Heartbeat {
  busyTask @0 :UInt64;   # 0 when idle
  relay @1 :RelayLoad;   # a relay's current load; unset for agents
}

# The root's instructions to a relay with a round's task: how many of its
# agents to sample, and how to validate and combine their results.
struct RelaySpec {
  agents @0 :UInt32;
  rule @1 :UInt8;              # 0 fedavg, 1 median, 2 trimmed mean (over the relay's agents)
  trimFraction @2 :Float32;
  maxUpdateNorm @3 :Float64;   # per agent update and shard; 0: none
  maxUpdateScale @4 :Float64;  # per value, times max(1, the shard's largest |value|)
}

struct ReasonCount {
  reason @0 :Text;
  count @1 :UInt32;
}

# A relay's answer for its task: its agents' updates combined into one
# partial (per shard, the sample-weighted mean or the robust statistic, as
# fp32), each shard with the total weight behind it.
struct RelayPartial {
  agentsSampled @0 :UInt32;
  agentsReported @1 :UInt32;
  agentsFailed @2 :UInt32;      # failed, lost, timed out or rejected
  rejections @3 :List(ReasonCount);
  shardWeights @4 :List(Float64);  # one per update, in order
}

struct Welcome {
  sessionId @0 :UInt64;
  heartbeatIntervalMs @1 :UInt32;
}

struct Hyper {
  learningRate @0 :Float32;
  batchSize @1 :UInt32;
  localSteps @2 :UInt32;
  quantizerEvery @3 :UInt32;   # learn-precision phase: update d/xmax every N steps
  penaltyScale @4 :Float32;    # s(t) of the size penalty
  weightBudgetKb @5 :Float32;
  activationBudgetKb @6 :Float32;
  lambdaW @7 :Float32;
  lambdaA @8 :Float32;
  penaltyForm @9 :UInt8;       # size penalty's excess: 0 relative (W/W* - 1), 1 absolute (kB)
  sizeAccounting @10 :UInt8;   # 0 reference (image not counted, classifier bias counted), 1 project
}

struct Task {
  roundId @0 :UInt64;
  taskId @1 :UInt64;
  modelVersion @2 :UInt64;
  phase @3 :Phase;
  deadlineMs @4 :UInt32;       # relative: time the agent has to answer
  hyper @5 :Hyper;
  uplinkCodec @6 :Codec;
  uplinkBits @7 :UInt8;
  trainableFrom @8 :UInt32;    # first trainable layer; earlier ones frozen
  shards @9 :List(TensorRef);
  seed @10 :UInt64;
  relay @11 :RelaySpec;        # set only in a task for a relay
}

struct TaskResult {
  roundId @0 :UInt64;
  taskId @1 :UInt64;
  modelVersion @2 :UInt64;
  samples @3 :UInt64;
  loss @4 :Float32;
  accuracy @5 :Float32;
  peakMemoryBytes @6 :UInt64;
  seconds @7 :Float32;
  updates @8 :List(TensorRef);
  # The agent process's peak resident set while it ran the task (VmHWM):
  # libraries, data, model, training and everything else; 0 if unknown.
  processPeakRssBytes @9 :UInt64;
  relay @10 :RelayPartial;     # set only in a relay's result
}

struct TaskFailed {
  roundId @0 :UInt64;
  taskId @1 :UInt64;
  reason @2 :Text;
}

struct NoTask {
  retryAfterMs @0 :UInt32;
}

struct Reject {
  reason @0 :Text;
}

# Answers every TaskResult; the agent re-sends a result until it gets one.
struct ResultAck {
  taskId @0 :UInt64;
  accepted @1 :Bool;
  reason @2 :Text;     # why not, when not accepted
}

struct Envelope {
  version @0 :UInt16;
  deviceId @1 :Text;
  sessionId @2 :UInt64;
  body :union {
    register @3 :Register;
    heartbeat @4 :Heartbeat;
    taskResult @5 :TaskResult;
    taskFailed @6 :TaskFailed;
    welcome @7 :Welcome;
    task @8 :Task;
    noTask @9 :NoTask;
    reject @10 :Reject;
    resultAck @11 :ResultAck;
  }
}
