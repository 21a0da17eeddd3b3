#include "coordinator/round_engine.h"

#include <vector>

#include "common/codec/update_codec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge {
namespace {

using ::testing::HasSubstr;

ModelState TwoShards() {
  ModelState m;
  m.shards = {{"fc1.weight", 0, {2, 2}, {0, 0, 0, 0}}, {"fc2.weight", 1, {2}, {1, 1}}};
  return m;
}

std::vector<AgentRecord> Agents(int n) {
  std::vector<AgentRecord> agents(n);
  for (int i = 0; i < n; ++i) {
    agents[i].device_id = "board-" + std::to_string(i);
    agents[i].registration.memory_budget_bytes = (i + 1) << 20;
  }
  return agents;
}

std::vector<const AgentRecord*> Pointers(const std::vector<AgentRecord>& agents) {
  std::vector<const AgentRecord*> out;
  for (const AgentRecord& a : agents) out.push_back(&a);
  return out;
}

TaskResult Result(const Task& task, float value, uint64_t samples) {
  TaskResult r;
  r.round_id = task.round_id;
  r.task_id = task.task_id;
  r.samples = samples;
  WireTensor t;
  t.name = "fc2.weight";
  t.shape = {2};
  const float v[] = {value, value};
  EXPECT_TRUE(EncodeUpdate(v, {Codec::kFp32, 0, 1}, 0, nullptr, &t).ok());
  r.updates.push_back(t);
  return r;
}

TEST(RoundEngineTest, ScheduleMapsRoundsToPhasesWithRamp) {
  RunConfig config;
  config.schedule = {{Phase::kPretrain, 1}, {Phase::kLearnPrecision, 4}, {Phase::kFinetune, 1}};
  RoundEngine engine(config, nullptr);
  EXPECT_EQ(engine.total_rounds(), 6);
  EXPECT_EQ(engine.PhaseOf(0), Phase::kPretrain);
  EXPECT_EQ(engine.PhaseOf(1), Phase::kLearnPrecision);
  EXPECT_EQ(engine.PhaseOf(5), Phase::kFinetune);
  EXPECT_DOUBLE_EQ(engine.RampOf(1), 0.01);            // first learn round
  EXPECT_DOUBLE_EQ(engine.RampOf(2), 0.01 + 0.99 / 2);  // half-way up
  EXPECT_DOUBLE_EQ(engine.RampOf(3), 1.0);              // ramp done at half the phase
}

TEST(RoundEngineTest, CosineScheduleScalesEachRoundsLearningRate) {
  RunConfig config;
  config.schedule = {{Phase::kPretrain, 4}};
  config.hyper.learning_rate = 2e-3f;
  config.lr_schedule = LrSchedule::kCosine;
  config.quorum = 1.0;
  RoundEngine engine(config, [](const AgentRecord&) { return ShardPlan{0, 0}; });
  const ModelState model = TwoShards();
  const std::vector<AgentRecord> agents = Agents(2);
  absl::Time now = absl::FromUnixSeconds(10);
  std::vector<float> rates;
  while (!engine.done()) {
    std::vector<OutgoingTask> tasks = engine.MaybeStartRound(Pointers(agents), model, now);
    ASSERT_EQ(tasks.size(), 2u);
    EXPECT_EQ(tasks[0].task.hyper.learning_rate, tasks[1].task.hyper.learning_rate);
    rates.push_back(tasks[0].task.hyper.learning_rate);
    for (const OutgoingTask& t : tasks) {
      ASSERT_TRUE(engine.OnResult(t.device_id, Result(t.task, 1, 10), model).ok());
    }
    now += absl::Seconds(1);
    ASSERT_TRUE(engine.MaybeFinish(now).has_value());
  }
  ASSERT_EQ(rates.size(), 4u);
  // 2e-3 * 0.5 (1 + cos(pi r / 4)), r = 0..3, in float.
  EXPECT_FLOAT_EQ(rates[0], 2e-3f);
  EXPECT_FLOAT_EQ(rates[1], 2e-3f * 0.8535534f);
  EXPECT_FLOAT_EQ(rates[2], 1e-3f);
  EXPECT_FLOAT_EQ(rates[3], 2e-3f * 0.1464466f);
}

TEST(RoundEngineTest, SamplesFractionPlansShardsAndAggregatesOnQuorum) {
  RunConfig config;
  config.fraction = 0.5;
  config.min_agents = 2;
  config.quorum = 0.5;
  RoundEngine engine(config, [](const AgentRecord& a) {
    return ShardPlan{a.registration.memory_budget_bytes >= (3u << 20) ? 0u : 1u, 0};
  });
  const ModelState model = TwoShards();
  const std::vector<AgentRecord> agents = Agents(6);
  const absl::Time t0 = absl::FromUnixSeconds(10);
  std::vector<OutgoingTask> tasks = engine.MaybeStartRound(Pointers(agents), model, t0);
  ASSERT_EQ(tasks.size(), 3u);  // half of 6
  EXPECT_TRUE(engine.MaybeStartRound(Pointers(agents), model, t0).empty());  // one at a time
  for (const OutgoingTask& t : tasks) {
    const bool big = t.device_id >= "board-2";
    EXPECT_EQ(t.task.trainable_from, big ? 0u : 1u) << t.device_id;
    EXPECT_EQ(t.task.phase, Phase::kPretrain);
  }
  ASSERT_TRUE(engine.OnResult(tasks[0].device_id, Result(tasks[0].task, 2, 100), model).ok());
  EXPECT_FALSE(engine.MaybeFinish(t0).has_value());  // 1 of 3 < quorum of 2
  // A result from the wrong device, or twice, is refused.
  EXPECT_EQ(engine.OnResult("board-x", Result(tasks[1].task, 9, 1), model).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(engine.OnResult(tasks[0].device_id, Result(tasks[0].task, 9, 1), model).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(engine.OnResult(tasks[1].device_id, Result(tasks[1].task, 4, 300), model).ok());
  auto finished = engine.MaybeFinish(t0 + absl::Seconds(1));
  ASSERT_TRUE(finished.has_value());
  EXPECT_FALSE(finished->deltas[0].updated);
  EXPECT_FLOAT_EQ(finished->deltas[1].delta[0], 3.5f);  // (2*100 + 4*300) / 400
  EXPECT_EQ(finished->summary.reported, 2);
  EXPECT_EQ(engine.completed_rounds(), 1u);
  // The third task's result is late: dropped in synchronous mode.
  EXPECT_EQ(engine.OnResult(tasks[2].device_id, Result(tasks[2].task, 1, 1), model).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(RoundEngineTest, AgentsWithoutAPlanAreNotSampledAndPlansSetTheBatch) {
  RunConfig config;
  config.min_agents = 3;
  // Budgets 1..6 MB: below 3 MB no plan, 3 MB a smaller batch.
  RoundEngine engine(config, [](const AgentRecord& a) -> std::optional<ShardPlan> {
    const uint64_t mb = a.registration.memory_budget_bytes >> 20;
    if (mb < 3) return std::nullopt;
    return ShardPlan{mb >= 5 ? 0u : 1u, mb == 3 ? 16u : 0u};
  });
  const ModelState model = TwoShards();
  const std::vector<AgentRecord> agents = Agents(6);
  std::vector<const AgentRecord*> live = Pointers(agents);
  // Of boards 0..3 only two (2 and 3) can train: fewer than the minimum.
  std::vector<const AgentRecord*> few(live.begin(), live.begin() + 4);  // budgets 1..4 MB
  EXPECT_TRUE(engine.MaybeStartRound(few, model, absl::FromUnixSeconds(1)).empty());
  std::vector<OutgoingTask> tasks = engine.MaybeStartRound(live, model, absl::FromUnixSeconds(2));
  ASSERT_EQ(tasks.size(), 4u);  // boards 2..5; fraction 1.0 of those that can train
  for (const OutgoingTask& t : tasks) {
    EXPECT_NE(t.device_id, "board-0");
    EXPECT_NE(t.device_id, "board-1");
    EXPECT_EQ(t.task.hyper.batch_size, t.device_id == "board-2" ? 16u : config.hyper.batch_size)
        << t.device_id;
  }
}

TEST(RoundEngineTest, DeadlineEndsARoundWithSomeResults) {
  RunConfig config;
  config.deadline = absl::Seconds(30);
  RoundEngine engine(config, nullptr);
  const ModelState model = TwoShards();
  const std::vector<AgentRecord> agents = Agents(3);
  const absl::Time t0 = absl::FromUnixSeconds(10);
  auto tasks = engine.MaybeStartRound(Pointers(agents), model, t0);
  ASSERT_EQ(tasks.size(), 3u);
  ASSERT_TRUE(engine.OnResult(tasks[0].device_id, Result(tasks[0].task, 1, 10), model).ok());
  engine.OnFailed(tasks[1].device_id, TaskFailed{tasks[1].task.round_id, tasks[1].task.task_id, "oom"});
  EXPECT_FALSE(engine.MaybeFinish(t0 + absl::Seconds(29)).has_value());
  auto finished = engine.MaybeFinish(t0 + absl::Seconds(30));
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->summary.failed, 1);
  EXPECT_EQ(finished->summary.reported, 1);
}

TEST(RoundEngineTest, AsyncFoldsLateResultsIntoTheNextRound) {
  RunConfig config;
  config.async = true;
  config.quorum = 0.5;
  config.aggregation.staleness_exponent = 1.0;
  RoundEngine engine(config, nullptr);
  const ModelState model = TwoShards();
  const std::vector<AgentRecord> agents = Agents(2);
  const absl::Time t0 = absl::FromUnixSeconds(10);
  auto tasks = engine.MaybeStartRound(Pointers(agents), model, t0);
  ASSERT_TRUE(engine.OnResult(tasks[0].device_id, Result(tasks[0].task, 1, 10), model).ok());
  ASSERT_TRUE(engine.MaybeFinish(t0).has_value());
  // The straggler reports after the round closed: kept for the next round at
  // half weight (staleness 1).
  ASSERT_TRUE(engine.OnResult(tasks[1].device_id, Result(tasks[1].task, 10, 10), model).ok());
  auto next = engine.MaybeStartRound(Pointers(agents), model, t0 + absl::Seconds(1));
  ASSERT_EQ(next.size(), 2u);
  ASSERT_TRUE(engine.OnResult(next[0].device_id, Result(next[0].task, 1, 10), model).ok());
  auto finished = engine.MaybeFinish(t0 + absl::Seconds(2));
  ASSERT_TRUE(finished.has_value());
  EXPECT_EQ(finished->summary.late_folded, 1);
  // (10 * 5 + 1 * 10) / 15 = 4
  EXPECT_FLOAT_EQ(finished->deltas[1].delta[0], 4.0f);
}

TEST(RoundEngineTest, LostAgentsStopBlockingTheQuorum) {
  RunConfig config;
  RoundEngine engine(config, nullptr);
  const ModelState model = TwoShards();
  const std::vector<AgentRecord> agents = Agents(2);
  const absl::Time t0 = absl::FromUnixSeconds(10);
  auto tasks = engine.MaybeStartRound(Pointers(agents), model, t0);
  ASSERT_TRUE(engine.OnResult(tasks[0].device_id, Result(tasks[0].task, 1, 10), model).ok());
  EXPECT_FALSE(engine.MaybeFinish(t0).has_value());  // quorum 1.0 waits for both
  engine.OnAgentLost(tasks[1].device_id);
  EXPECT_TRUE(engine.MaybeFinish(t0).has_value());
}


}  // namespace
}  // namespace fedge
