#include "common/io/log_text.h"

#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(LogTextTest, NewlinesCannotStartAForgedLine) {
  const std::string forged = LogText("board-1\n[coordinator] round 9/9 done");
  EXPECT_EQ(forged.find('\n'), std::string::npos);
  EXPECT_EQ(forged, "board-1\\n[coordinator] round 9/9 done");
  EXPECT_EQ(LogText(std::string("a\0b\r\x1b[2J\xff", 9)), "a\\000b\\r\\033[2J\\377");
}

TEST(LogTextTest, LongTextIsCut) {
  EXPECT_EQ(LogText(std::string(200, 'x'), 4), "xxxx...");
  EXPECT_EQ(LogText("board-7"), "board-7");
}

}  // namespace
}  // namespace fedge
