#include "coordinator/checkpoint.h"

#include <cstdio>
#include <string>

#include "common/io/file_util.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

TEST(CheckpointTest, RoundTripsAndRejectsDamage) {
  Checkpoint c;
  c.model.version = 7;
  c.model.shards = {{"fc.weight", 0, {2, 3}, {1, 2, 3, 4, 5, 6}}};
  c.completed_rounds = 7;
  c.rng_state = 12345;
  c.known_agents = {"board-1", "board-2"};
  const std::string path = TempPath("checkpoint.bin");
  ASSERT_TRUE(WriteCheckpoint(path, c).ok());
  absl::StatusOr<Checkpoint> back = ReadCheckpoint(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->completed_rounds, 7u);
  EXPECT_EQ(back->rng_state, 12345u);
  EXPECT_EQ(back->known_agents, c.known_agents);
  EXPECT_EQ(back->model.shards[0].values, c.model.shards[0].values);

  std::string bytes = *ReadFileToString(path, 1 << 20);
  ASSERT_TRUE(WriteFileAtomically(path, bytes.substr(0, bytes.size() - 5)).ok());
  EXPECT_EQ(ReadCheckpoint(path).status().code(), absl::StatusCode::kDataLoss);
  bytes[40] ^= 0x10;
  ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  EXPECT_EQ(ReadCheckpoint(path).status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadCheckpoint(TempPath("none.bin")).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace fedge
