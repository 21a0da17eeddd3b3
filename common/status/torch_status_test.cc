#include "common/status/torch_status.h"

#include <new>
#include <string>

#include "ATen/ATen.h"
#include "c10/util/Exception.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(TorchStatusTest, PassesStatusThrough) {
  EXPECT_TRUE(CallTorch("noop", [] { return absl::OkStatus(); }).ok());
  EXPECT_EQ(CallTorch("own error",
                      [] { return absl::NotFoundError("missing"); })
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(TorchStatusTest, RealShapeErrorBecomesInternalWithContext) {
  const absl::Status status = CallTorch("reshaping shard fc1", [] {
    at::Tensor t = at::zeros({2, 3});
    t = t.view({7});
    return absl::OkStatus();
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kInternal);
  const std::string message(status.message());
  EXPECT_THAT(message, StartsWith("reshaping shard fc1: "));
  EXPECT_THAT(message, HasSubstr("invalid for input of size 6"));
  // The backtrace c10 appends is cut off.
  EXPECT_THAT(message, Not(HasSubstr("\n")));
}

TEST(TorchStatusTest, ValueAndIndexErrorsAreInvalidArgument) {
  EXPECT_EQ(CallTorch("value",
                      [] {
                        TORCH_CHECK_VALUE(false, "negative step");
                        return absl::OkStatus();
                      })
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CallTorch("index",
                      [] {
                        at::Tensor t = at::zeros({3});
                        (void)t.select(0, 5);
                        return absl::OkStatus();
                      })
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TorchStatusTest, NotImplementedAndOutOfMemory) {
  EXPECT_EQ(CallTorch("op",
                      [] {
                        TORCH_CHECK_NOT_IMPLEMENTED(false, "no kernel");
                        return absl::OkStatus();
                      })
                .code(),
            absl::StatusCode::kUnimplemented);
  const absl::Status oom = CallTorch("alloc", []() -> absl::Status {
    throw std::bad_alloc();
  });
  EXPECT_EQ(oom.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(oom.message(), "alloc: out of memory");
}

}  // namespace
}  // namespace fedge
