#include "common/status/capnp_status.h"

#include <string>
#include <vector>

#include "capnp/any.h"
#include "capnp/serialize.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kj/exception.h"

namespace fedge {
namespace {

using ::testing::StartsWith;

TEST(CapnpStatusTest, GarbageMessageBecomesInvalidArgument) {
  // A segment table claiming 2^31 segments: the reader must refuse it.
  std::vector<capnp::word> words(4, capnp::word());
  auto* raw = reinterpret_cast<uint32_t*>(words.data());
  raw[0] = 0x7FFFFFFF;
  const absl::Status status = CallCapnp("decoding Register", [&] {
    capnp::FlatArrayMessageReader reader(
        kj::ArrayPtr<const capnp::word>(words.data(), words.size()));
    (void)reader.getRoot<capnp::AnyPointer>();
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), StartsWith("decoding Register: "));
}

TEST(CapnpStatusTest, MapsExceptionTypes) {
  auto throwing = [](kj::Exception::Type type) {
    return CallCapnp("ctx", [type]() -> absl::Status {
      throw kj::Exception(type, __FILE__, __LINE__, kj::heapString("boom"));
    });
  };
  EXPECT_EQ(throwing(kj::Exception::Type::OVERLOADED).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(throwing(kj::Exception::Type::DISCONNECTED).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(throwing(kj::Exception::Type::UNIMPLEMENTED).code(),
            absl::StatusCode::kUnimplemented);
  const absl::Status failed = throwing(kj::Exception::Type::FAILED);
  EXPECT_EQ(failed.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(failed.message(), "ctx: boom");
}

TEST(CapnpStatusTest, PassesStatusThrough) {
  EXPECT_TRUE(CallCapnp("ok", [] { return absl::OkStatus(); }).ok());
}

}  // namespace
}  // namespace fedge
