#include "common/status/reject_reason.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace fedge {
namespace {

TEST(RejectReasonTest, TagSurvivesCopiesAndRewording) {
  const absl::Status s =
      WithReason(absl::InvalidArgumentError("element 3 is not finite"), RejectReason::kNonFinite);
  const absl::Status copy = s;
  EXPECT_EQ(ReasonOf(copy), RejectReason::kNonFinite);
  // The label follows the tag, not the words.
  const absl::Status reworded =
      WithReason(absl::InvalidArgumentError("a NaN at 3"), RejectReason::kNonFinite);
  EXPECT_STREQ(ReasonLabel(ReasonOf(reworded)), "non_finite");
}

TEST(RejectReasonTest, UntaggedFallsBackAndOkStaysUntagged) {
  EXPECT_EQ(ReasonOf(absl::InvalidArgumentError("not finite")), RejectReason::kMalformedUpdate);
  EXPECT_EQ(ReasonOf(absl::InternalError("x"), RejectReason::kOutsideRound),
            RejectReason::kOutsideRound);
  EXPECT_TRUE(WithReason(absl::OkStatus(), RejectReason::kDuplicate).ok());
}

TEST(RejectReasonTest, LabelsAreDistinct) {
  std::set<std::string> labels;
  for (RejectReason r : kAllRejectReasons) labels.insert(ReasonLabel(r));
  EXPECT_EQ(labels.size(), sizeof(kAllRejectReasons) / sizeof(kAllRejectReasons[0]));
}

}  // namespace
}  // namespace fedge
