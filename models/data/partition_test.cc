#include "models/data/partition.h"

#include <algorithm>
#include <set>

#include "gtest/gtest.h"

namespace fedge {
namespace {

std::vector<int> Labels(int per_class, int classes) {
  std::vector<int> labels;
  for (int i = 0; i < per_class * classes; ++i) labels.push_back(i % classes);
  return labels;
}

void ExpectExactCover(const std::vector<std::vector<int64_t>>& parts, size_t n) {
  std::set<int64_t> seen;
  size_t total = 0;
  for (const auto& p : parts) {
    EXPECT_FALSE(p.empty());
    total += p.size();
    seen.insert(p.begin(), p.end());
  }
  EXPECT_EQ(total, n);
  EXPECT_EQ(seen.size(), n);
}

TEST(PartitionTest, IidSplitsEvenly) {
  const auto labels = Labels(100, 10);
  const auto parts = *Partition(labels, 10, *ParsePartition("iid", 7, 1));
  ExpectExactCover(parts, labels.size());
  for (const auto& p : parts) EXPECT_NEAR(p.size(), 1000.0 / 7, 1);
}

TEST(PartitionTest, DirichletIsSkewedAndDeterministic) {
  const auto labels = Labels(600, 10);
  const auto spec = *ParsePartition("dirichlet:0.1", 10, 3);
  const auto parts = *Partition(labels, 10, spec);
  ExpectExactCover(parts, labels.size());
  // With alpha 0.1 most agents hold few classes in bulk: the largest class
  // share of an agent is well above the uniform 10%.
  double mean_top_share = 0;
  for (const auto& p : parts) {
    std::vector<int> counts(10);
    for (int64_t i : p) ++counts[labels[i]];
    mean_top_share += static_cast<double>(*std::max_element(counts.begin(), counts.end())) / p.size();
  }
  EXPECT_GT(mean_top_share / 10, 0.5);
  EXPECT_EQ(parts, *Partition(labels, 10, spec));
}

TEST(PartitionTest, RejectsBadSpecs) {
  EXPECT_FALSE(ParsePartition("dirichlet:0", 3, 1).ok());
  EXPECT_FALSE(ParsePartition("dirichlet:x", 3, 1).ok());
  EXPECT_FALSE(ParsePartition("zipf", 3, 1).ok());
  EXPECT_FALSE(ParsePartition("iid", 0, 1).ok());
  EXPECT_FALSE(Partition({0, 1}, 2, *ParsePartition("iid", 3, 1)).ok());
  EXPECT_FALSE(Partition({0, 7}, 2, *ParsePartition("dirichlet:1", 2, 1)).ok());
}

}  // namespace
}  // namespace fedge
