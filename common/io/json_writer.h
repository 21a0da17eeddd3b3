#ifndef FEDGE_COMMON_JSON_WRITER_H_
#define FEDGE_COMMON_JSON_WRITER_H_

// One flat JSON object, written in the order fields are added: numbers in
// the shortest form that reads back exactly (or at a given precision),
// strings escaped as RFC 8259 asks. For the JSON lines the coordinator and
// the benchmarks write, instead of format strings by hand.
//
//   std::string line = JsonObject().Add("round", 3).Add("phase", "finetune")
//                          .Add("test_accuracy", 0.8921, 4).str();
//   // {"round": 3, "phase": "finetune", "test_accuracy": 0.8921}
//
// Thread-compatible.

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace fedge {

class JsonObject {
 public:
  JsonObject& Add(absl::string_view key, absl::string_view value);
  JsonObject& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  JsonObject& Add(absl::string_view key, int64_t value);
  JsonObject& Add(absl::string_view key, int value) { return Add(key, int64_t{value}); }
  JsonObject& Add(absl::string_view key, uint64_t value);
  // `decimals` < 0: as many digits as reading it back exactly needs. A
  // non-finite value (which JSON cannot hold) is written as null.
  JsonObject& Add(absl::string_view key, double value, int decimals = -1);
  JsonObject& Add(absl::string_view key, bool value);

  std::string str() const { return body_ + "}"; }

 private:
  void Key(absl::string_view key);
  std::string body_ = "{";
};

// `text` as a JSON string literal, quotes included.
std::string JsonString(absl::string_view text);

}  // namespace fedge

#endif  // FEDGE_COMMON_JSON_WRITER_H_
