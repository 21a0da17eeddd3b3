#include "common/wire/messages.h"

namespace fedge {

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kPretrain:
      return "pretrain";
    case Phase::kLearnPrecision:
      return "learn-precision";
    case Phase::kFinetune:
      return "finetune";
  }
  return "unknown";
}

const char* CodecName(Codec codec) {
  switch (codec) {
    case Codec::kFp32:
      return "fp32";
    case Codec::kFp16:
      return "fp16";
    case Codec::kQ:
      return "q";
    case Codec::kSignEf:
      return "sign-ef";
    case Codec::kMixed:
      return "mixed";
  }
  return "unknown";
}

int64_t WireTensor::numel() const {
  int64_t n = 1;
  for (uint32_t d : shape) n *= d;
  return n;
}

const char* BodyName(const Body& body) {
  static constexpr const char* kNames[] = {
      "Register", "Heartbeat", "TaskResult", "TaskFailed",
      "Welcome",  "Task",      "NoTask",     "Reject",     "ResultAck"};
  return kNames[body.index()];
}

}  // namespace fedge
