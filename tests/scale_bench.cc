// Scale benchmark: one coordinator service and N lightweight simulated
// agents in one process over the in-memory transport (design 5: 10,000
// agents in one round on a 2-core machine). Agents skip training and answer
// each task with a synthetic sign-ef update of the model's shapes. Reports
// the round time, messages per second, the aggregator's memory against the
// model size, and aggregation throughput against memcpy in the same run.
//
//   bazel run -c opt //tests:scale_bench -- --agents=10000

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "common/io/file_util.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "common/transport/testing/in_memory_transport.h"
#include "common/codec/update_codec.h"
#include "coordinator/aggregator.h"
#include "coordinator/service.h"
#include "device_agent/agent_loop.h"
#include "device_agent/testing/synthetic_executor.h"

ABSL_FLAG(int, agents, 10000, "simulated agents");
ABSL_FLAG(int64_t, parameters, 16384, "model parameters (two shards)");
ABSL_FLAG(int, throughput_updates, 20, "updates aggregated for the throughput figure");
ABSL_FLAG(int64_t, throughput_parameters, 4 << 20,
          "parameters of the update used for the throughput figure (out of cache, like a real model)");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON goes");

namespace fedge {
namespace {

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

int64_t PeakRss() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;
}

// An agent: the real agent loop with a synthetic executor that answers at
// once with a sign-ef update.
struct LightAgent {
  LightAgent(std::unique_ptr<Transport> t, const std::string& id)
      : link(std::move(t)),
        executor({1e-3f, 100, absl::ZeroDuration(), /*sign_ef_from=*/1}),
        loop(link.get(), &executor, Options(id)) {}
  static AgentLoopOptions Options(const std::string& id) {
    AgentLoopOptions o;
    o.session.device_id = id;
    o.session.registration = Register{64 << 20, 1, 100, "scale"};
    o.session.coordinator_timeout = absl::Hours(1);
    return o;
  }
  void Step(absl::Time now) { loop.Step(now, absl::ZeroDuration()); }

  std::unique_ptr<Transport> link;
  SyntheticExecutor executor;
  AgentLoop loop;
};

int Run() {
  const int n = absl::GetFlag(FLAGS_agents);
  const int64_t params = absl::GetFlag(FLAGS_parameters);
  if (n < 1 || params < 256) {
    std::fprintf(stderr, "scale_bench: --agents >= 1 and --parameters >= 256\n");
    return 2;
  }
  ModelState model;
  model.shards = {{"big.weight", 0, {static_cast<uint32_t>(params - 256)},
                   std::vector<float>(params - 256, 0.0f)},
                  {"head.weight", 1, {256}, std::vector<float>(256, 0.0f)}};
  const double model_bytes = 4.0 * params;

  InMemoryNetwork net;
  auto server = net.Bind();
  ServiceOptions options;
  options.run.schedule = {{Phase::kPretrain, 1}};
  options.run.min_agents = n;
  options.run.deadline = absl::Hours(1);
  options.run.uplink = Codec::kSignEf;
  options.downlink = Codec::kFp16;
  options.log = false;
  double round_seconds = 0;
  int reported = 0;
  CoordinatorService service(options, model, 0, server.get(),
                             [&](const RoundReport& r, const ModelState&) {
                               reported = r.summary.reported;
                             });
  std::vector<std::unique_ptr<LightAgent>> agents;
  for (int i = 0; i < n; ++i) {
    const std::string id = "a" + std::to_string(i);
    agents.push_back(std::make_unique<LightAgent>(net.Connect(id), id));
  }
  const int64_t rss_before = PeakRss();
  absl::Time now = absl::FromUnixSeconds(1);
  // Registration.
  for (auto& a : agents) a->Step(now);
  while (service.registry().registered() < static_cast<size_t>(n)) {
    if (!service.Step(now, absl::ZeroDuration()).ok()) return 1;
  }
  for (auto& a : agents) a->Step(now);  // welcomes
  // The round: tasks out, results in, aggregation.
  const auto start = std::chrono::steady_clock::now();
  const int64_t messages_before = service.counters().messages;
  while (!service.engine().in_round()) {
    if (!service.Step(now, absl::ZeroDuration()).ok()) return 1;
  }
  for (auto& a : agents) a->Step(now);  // every agent answers its task
  while (!service.done()) {
    if (!service.Step(now, absl::ZeroDuration()).ok()) return 1;
  }
  round_seconds = Seconds(start);
  const int64_t round_messages = service.counters().messages - messages_before;
  const int64_t rss_round = PeakRss() - rss_before;

  // Aggregation throughput against memcpy, same run, same bytes.
  const int64_t tp = absl::GetFlag(FLAGS_throughput_parameters);
  const double tp_bytes = 4.0 * tp;
  std::vector<float> values(tp, 1e-3f);
  WireTensor update;
  update.name = "w";
  update.shape = {static_cast<uint32_t>(tp)};
  (void)EncodeUpdate(values, {Codec::kFp32, 0, 1}, 0, nullptr, &update);
  const int reps = absl::GetFlag(FLAGS_throughput_updates);
  std::vector<double> agg_times, copy_times;
  std::vector<float> copy(tp);
  for (int trial = 0; trial < 5; ++trial) {
    Aggregator agg({{"w", tp}}, AggregatorOptions());
    auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) (void)agg.Add(0, update, 100);
    agg_times.push_back(Seconds(t0));
    t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) {
      std::memcpy(copy.data(), update.payload.data(), update.payload.size());
      asm volatile("" : : "r"(copy.data()) : "memory");
    }
    copy_times.push_back(Seconds(t0));
  }
  std::sort(agg_times.begin(), agg_times.end());
  std::sort(copy_times.begin(), copy_times.end());
  const double agg_gbs = reps * tp_bytes / agg_times[2] / 1e9;
  const double copy_gbs = reps * tp_bytes / copy_times[2] / 1e9;
  // The aggregator's own state for this model: double sums and a float scratch.
  const double aggregator_bytes = 12.0 * params;

  std::printf("%d agents, model %lld parameters (%.0f kB fp32)\n\n", n,
              static_cast<long long>(params), model_bytes / 1000);
  std::printf("%-52s %14s\n", "figure", "value");
  std::printf("%-52s %14d\n", "results aggregated in the round", reported);
  std::printf("%-52s %14.2f\n", "round time (s): tasks out, results in, aggregate", round_seconds);
  std::printf("%-52s %14.0f\n", "coordinator messages handled per second", round_messages / round_seconds);
  std::printf("%-52s %14.1f\n", "aggregator state / model size (x)", aggregator_bytes / model_bytes);
  std::printf("%-52s %14.1f\n", "process peak RSS growth in the round (MB, all agents)", rss_round / 1e6);
  std::printf("%-52s %14.2f\n", "aggregation throughput (GB/s of fp32 parameters)", agg_gbs);
  std::printf("%-52s %14lld\n", "  measured on an update of parameters", static_cast<long long>(tp));
  std::printf("%-52s %14.2f\n", "memcpy of the same bytes (GB/s), same run", copy_gbs);
  std::printf("%-52s %14.3f\n", "aggregation / memcpy", agg_gbs / copy_gbs);
  const std::string dir = absl::GetFlag(FLAGS_out_dir);
  if (absl::Status s = CreateDirectories(dir); !s.ok()) {
    std::fprintf(stderr, "scale_bench: %s\n", s.ToString().c_str());
    return 1;
  }
  std::ofstream(dir + "/scale_bench.json") << absl::StrFormat(
      "{\"agents\": %d, \"parameters\": %d, \"reported\": %d, \"round_seconds\": %.3f, "
      "\"messages_per_second\": %.1f, \"aggregator_state_over_model\": %.2f, "
      "\"aggregation_gbs\": %.3f, \"memcpy_gbs\": %.3f, \"aggregation_over_memcpy\": %.4f}\n",
      n, params, reported, round_seconds, round_messages / round_seconds,
      aggregator_bytes / model_bytes, agg_gbs, copy_gbs, agg_gbs / copy_gbs);
  return reported == n ? 0 : 1;
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return fedge::Run();
}
