#include "common/io/file_util.h"

#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

std::string Temp(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

TEST(FileUtilTest, CreateDirectoriesMakesParentsAndAcceptsExisting) {
  const std::string deep = Temp("a/b/c");
  ASSERT_TRUE(CreateDirectories(deep).ok());
  EXPECT_TRUE(CreateDirectories(deep).ok());
  ASSERT_TRUE(WriteFileAtomically(deep + "/f", "x").ok());
  EXPECT_EQ(*ReadFileToString(deep + "/f", 10), "x");
  // A file in the way, and an empty path, are clear errors.
  EXPECT_EQ(CreateDirectories(deep + "/f").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CreateDirectories(deep + "/f/g").code(), absl::StatusCode::kInternal);
  EXPECT_EQ(CreateDirectories("").code(), absl::StatusCode::kInvalidArgument);
}

TEST(FileUtilTest, CheckWritableDirectoryNamesWhatIsWrong) {
  const std::string dir = Temp("writable");
  ASSERT_TRUE(CreateDirectories(dir).ok());
  EXPECT_TRUE(CheckWritableDirectory(dir).ok());
  const absl::Status missing = CheckWritableDirectory(Temp("no-such-dir"));
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound) << missing;
  EXPECT_NE(missing.message().find("no-such-dir"), absl::string_view::npos);
  ASSERT_TRUE(WriteFileAtomically(dir + "/file", "x").ok());
  EXPECT_EQ(CheckWritableDirectory(dir + "/file").code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FileUtilTest, ReadRefusesMissingAndOversizedFiles) {
  EXPECT_EQ(ReadFileToString(Temp("missing"), 10).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(WriteFileAtomically(Temp("big"), std::string(100, 'x')).ok());
  EXPECT_EQ(ReadFileToString(Temp("big"), 10).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace fedge
