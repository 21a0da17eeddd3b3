#include "common/io/json_writer.h"

#include <limits>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(JsonWriterTest, FieldsInOrderWithExactNumbers) {
  EXPECT_EQ(JsonObject()
                .Add("round", 3)
                .Add("phase", "finetune")
                .Add("test_accuracy", 0.8921, 4)
                .Add("bits", 3.1)
                .Add("bytes", uint64_t{1} << 40)
                .Add("ok", true)
                .str(),
            "{\"round\": 3, \"phase\": \"finetune\", \"test_accuracy\": 0.8921, \"bits\": 3.1, "
            "\"bytes\": 1099511627776, \"ok\": true}");
  EXPECT_EQ(JsonObject().str(), "{}");
  EXPECT_EQ(JsonObject().Add("x", 0.1 + 0.2).str(), "{\"x\": 0.30000000000000004}");
}

TEST(JsonWriterTest, EscapesStringsAndRefusesNonFiniteNumbers) {
  EXPECT_EQ(JsonString("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\u0001\"");
  EXPECT_EQ(JsonObject().Add("nan", std::numeric_limits<double>::quiet_NaN()).str(),
            "{\"nan\": null}");
}

}  // namespace
}  // namespace fedge
