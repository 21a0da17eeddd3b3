#include "common/status/status_macros.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

absl::StatusOr<int> ParsePositive(int x) {
  if (x <= 0) return absl::InvalidArgumentError("not positive");
  return x;
}

absl::Status CheckEven(int x, int* calls) {
  ++*calls;
  if (x % 2 != 0) return absl::FailedPreconditionError("odd");
  return absl::OkStatus();
}

absl::Status TwoChecks(int x, int* calls) {
  RETURN_IF_ERROR(CheckEven(x, calls));
  RETURN_IF_ERROR(CheckEven(x / 2, calls));
  return absl::OkStatus();
}

absl::StatusOr<int> DoubleParsed(int x) {
  ASSIGN_OR_RETURN(const int value, ParsePositive(x));
  int other = 0;
  ASSIGN_OR_RETURN(other, ParsePositive(value + 1));
  return value + other;
}

absl::StatusOr<std::unique_ptr<std::string>> MakeName(bool ok) {
  if (!ok) return absl::NotFoundError("no name");
  return std::make_unique<std::string>("agent-7");
}

absl::StatusOr<size_t> NameLength(bool ok) {
  ASSIGN_OR_RETURN(std::unique_ptr<std::string> name, MakeName(ok));
  return name->size();
}

TEST(StatusMacrosTest, ReturnIfErrorStopsAtFirstFailure) {
  int calls = 0;
  EXPECT_TRUE(TwoChecks(4, &calls).ok());
  EXPECT_EQ(calls, 2);
  calls = 0;
  EXPECT_EQ(TwoChecks(3, &calls).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(calls, 1);
  calls = 0;
  EXPECT_EQ(TwoChecks(6, &calls).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(calls, 2);
}

TEST(StatusMacrosTest, AssignOrReturnDeclaresAndAssigns) {
  absl::StatusOr<int> ok = DoubleParsed(3);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 7);
  EXPECT_EQ(DoubleParsed(-1).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StatusMacrosTest, AssignOrReturnMovesOnlyTypes) {
  EXPECT_EQ(*NameLength(true), 7u);
  EXPECT_EQ(NameLength(false).status().code(), absl::StatusCode::kNotFound);
}

TEST(StatusMacrosTest, AnnotateKeepsCodeAndPrefixesMessage) {
  const absl::Status s =
      Annotate(absl::DataLossError("bad crc"), "reading checkpoint 12");
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(s.message(), "reading checkpoint 12: bad crc");
  EXPECT_TRUE(Annotate(absl::OkStatus(), "anything").ok());
}

}  // namespace
}  // namespace fedge
