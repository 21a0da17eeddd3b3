// Writes valid encoded messages, in wire_fuzz.cc's input format, as the
// fuzzer's seed corpus: one file per message type.
//
//   wire_fuzz_seeds OUT_DIR

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/codec/update_codec.h"
#include "common/wire/wire_codec.h"

namespace fedge {
namespace {

WireTensor Tensor(Codec codec) {
  WireTensor t;
  t.layer = 1;
  t.name = "weight";
  t.shape = {4, 6};
  std::vector<float> values(24);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.1f * (static_cast<int>(i) - 12);
  std::vector<float> residual(24);
  if (codec == Codec::kMixed) {
    (void)EncodeMixed(values, std::vector<SliceInfo>(4, SliceInfo{3, 0.2f, 0.6f}), &t);
  } else {
    (void)EncodeUpdate(values, {codec, 4, 4}, 1, &residual, &t);
  }
  return t;
}

int Write(const std::string& dir) {
  std::vector<Body> bodies;
  bodies.push_back(Register{1 << 20, 2, 600, "fedge"});
  bodies.push_back(Heartbeat{3});
  bodies.push_back(Welcome{7, 500});
  bodies.push_back(NoTask{1000});
  bodies.push_back(Reject{"unknown device"});
  bodies.push_back(ResultAck{7, false, "outside_round"});
  bodies.push_back(TaskFailed{1, 2, "oom"});
  Task task;
  task.shards = {Tensor(Codec::kFp16), Tensor(Codec::kMixed)};
  bodies.push_back(task);
  TaskResult result;
  result.samples = 60;
  result.updates = {Tensor(Codec::kSignEf), Tensor(Codec::kQ), Tensor(Codec::kFp32)};
  bodies.push_back(result);
  // A relay's messages: its load, the root's task for it, its partial.
  bodies.push_back(Register{1 << 20, 1, 1200, "fedge relay", 0, true, RelayLoad{12, 1200, 1 << 20}});
  bodies.push_back(Heartbeat{4, RelayLoad{12, 1200, 1 << 20}});
  Task relay_task = task;
  relay_task.relay = RelaySpec{6, kRuleTrimmedMean, 0.1f, 10, 100};
  bodies.push_back(relay_task);
  TaskResult partial;
  partial.samples = 1200;
  partial.updates = {Tensor(Codec::kFp32), Tensor(Codec::kFp32)};
  partial.updates[1].name = "bias";
  partial.relay = RelayPartial{12, 10, 2, {{"non_finite", 1}}, {1000, 1000}};
  bodies.push_back(partial);
  int index = 0;
  for (const Body& body : bodies) {
    Message m;
    m.device_id = "board-1";
    m.body = body;
    absl::StatusOr<std::vector<std::string>> frames = EncodeMessage(m);
    if (!frames.ok()) {
      std::fprintf(stderr, "seed %d: %s\n", index, frames.status().ToString().c_str());
      return 1;
    }
    std::string bytes;
    for (const std::string& f : *frames) {
      bytes.push_back(static_cast<char>(f.size() & 0xFF));
      bytes.push_back(static_cast<char>((f.size() >> 8) & 0xFF));
      bytes += f;
    }
    std::ofstream(dir + "/seed-" + std::to_string(index++), std::ios::binary) << bytes;
  }
  return 0;
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: wire_fuzz_seeds OUT_DIR\n");
    return 2;
  }
  return fedge::Write(argv[1]);
}
