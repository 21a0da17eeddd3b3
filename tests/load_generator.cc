// Load generator: the real coordinator binary, and N lightweight agents over
// real ZeroMQ with CURVE on loopback, each with its own enrolled key pair,
// speaking the real protocol (register, heartbeat, task, result, ack) through
// the agent's own event loop. Agents skip training: each answers its task at
// once with a sign-ef update of every shard it was sent, encoded by the real
// codec, so the uplink carries updates of the real model's size.
//
// Measures one round: wall time from the last Welcome to the last result's
// acknowledgement, the coordinator process's CPU seconds (from /proc) while
// agents register and during the round, its resident memory before the
// agents, with all of them registered, and at its peak, bytes per
// connection either way, and messages per second.
//
//   bazel run -c opt //tests:load_generator -- --agents=10000
//
// Agents run in as many processes as their sockets need under the open-file
// limit (raised to the hard limit first), each stepping its share on its own
// threads; they report through counters in shared memory.
//
// With --relays=R the agents connect to R relay aggregators instead (the
// real relay binary, each with its own key enrolled on the coordinator as a
// relay, agent i behind relay i mod R), and the round ends when the
// coordinator has aggregated the relays' partials; the relays' CPU and peak
// RSS are reported beside the coordinator's. With --in_memory_agents the
// relays run in this process (ZeroMQ with CURVE up to the coordinator, one
// thread each) and their agents over the in-memory transport below them:
// fleets past what one machine's sockets hold, with the coordinator's own
// figures still its process's.
//
//   bazel run -c opt //tests:load_generator -- --agents=10000 --relays=4
//   bazel run -c opt //tests:load_generator -- --agents=100000 --relays=4 --in_memory_agents

#include <malloc.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/io/file_util.h"
#include "common/status/status_macros.h"
#include "common/transport/testing/in_memory_transport.h"
#include "common/transport/zmq_transport.h"
#include "coordinator/relay.h"
#include "device_agent/agent_loop.h"
#include "device_agent/testing/synthetic_executor.h"

ABSL_FLAG(int, agents, 1000, "agents, each with its own CURVE key and connection");
ABSL_FLAG(int, threads, 1, "threads per agent process stepping its agents");
ABSL_FLAG(int, processes, 0, "agent processes (0: as many as the open-file limit needs)");
ABSL_FLAG(int, io_threads, 1, "ZeroMQ I/O threads of the agents' shared context");
ABSL_FLAG(std::string, coordinator, "coordinator/coordinator", "the coordinator binary");
ABSL_FLAG(std::string, arch, "fmnist-cnn", "the model the coordinator serves");
ABSL_FLAG(std::string, downlink, "mixed", "the coordinator's --downlink");
ABSL_FLAG(int, port, 17070, "loopback port of the coordinator");
ABSL_FLAG(int, heartbeat_ms, 5000, "agents' heartbeat interval");
ABSL_FLAG(int, timeout_s, 600, "give up after this long");
ABSL_FLAG(std::string, work_dir, "/tmp/fedge-load", "keys, allowlist and coordinator state");
ABSL_FLAG(std::string, out_dir, "bench_results", "where JSON goes");
ABSL_FLAG(int, relays, 0, "relay aggregators between the agents and the coordinator (0: none)");
ABSL_FLAG(std::string, relay, "coordinator/relay_main", "the relay binary");
ABSL_FLAG(bool, in_memory_agents, false,
          "with --relays: relays in this process, their agents over the in-memory transport");

extern char** environ;

namespace fedge {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// utime + stime of `pid`, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / sysconf(_SC_CLK_TCK);
}

// A "Vm...:" line of /proc/pid/status, in bytes.
int64_t StatusBytes(pid_t pid, const std::string& key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size())) * 1024;
  }
  return -1;
}

// Counts what an agent's transport carries, in frame bytes and messages.
class CountingTransport : public Transport {
 public:
  explicit CountingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  absl::Status Send(Packet packet) override {
    int64_t bytes = 0;
    for (const std::string& f : packet.frames) bytes += f.size();
    absl::Status s = inner_->Send(std::move(packet));
    if (s.ok()) {
      bytes_out += bytes;
      ++messages_out;
    }
    return s;
  }
  absl::StatusOr<std::optional<Packet>> Receive(absl::Duration timeout) override {
    absl::StatusOr<std::optional<Packet>> p = inner_->Receive(timeout);
    if (p.ok() && p->has_value()) {
      for (const std::string& f : (*p)->frames) bytes_in += f.size();
      ++messages_in;
    }
    return p;
  }
  int64_t connections() const override { return inner_->connections(); }

  int64_t bytes_in = 0, bytes_out = 0, messages_in = 0, messages_out = 0;

 private:
  std::unique_ptr<Transport> inner_;
};

struct LoadAgent {
  std::unique_ptr<CountingTransport> link;
  std::unique_ptr<SyntheticExecutor> executor;
  std::unique_ptr<AgentLoop> loop;
  bool welcomed = false;
  bool acknowledged = false;
};

// Raises the soft open-file limit as far as allowed (the hard limit too,
// where the process may) and returns it.
rlim_t RaiseFileLimit(rlim_t want) {
  rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  rlimit raised = limit;
  raised.rlim_cur = raised.rlim_max = std::max(want, limit.rlim_max);
  if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return raised.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  (void)setrlimit(RLIMIT_NOFILE, &limit);
  getrlimit(RLIMIT_NOFILE, &limit);
  return limit.rlim_cur;
}

// What the agent processes report, in memory they share with the parent.
struct SharedCounters {
  std::atomic<int> welcomed{0}, acknowledged{0};
  std::atomic<bool> stop{false};
  std::atomic<int64_t> bytes_in{0}, bytes_out{0}, messages{0};
};

// One agent process: agents first, first + step, ... of `keys`, stepped by
// `threads` threads until the parent says stop.
// The real agent loop with a synthetic executor over `link`.
void MakeAgent(const std::string& id, std::unique_ptr<CountingTransport> link, LoadAgent* agent) {
  agent->link = std::move(link);
  SyntheticTaskOptions task;
  task.value = 1e-3f;
  task.samples = 100;
  task.keep_task_payloads = false;
  task.reuse_encoded_updates = true;
  agent->executor = std::make_unique<SyntheticExecutor>(task);
  AgentLoopOptions loop;
  loop.session.device_id = id;
  loop.session.registration = Register{int64_t{256} << 20, 1, 100, "load-generator"};
  loop.session.max_register_retry = absl::Seconds(60);
  loop.session.coordinator_timeout = absl::Seconds(600);
  loop.session.result_retry = absl::Seconds(120);
  agent->loop = std::make_unique<AgentLoop>(agent->link.get(), agent->executor.get(), loop);
}

void StepAgent(absl::Time now, LoadAgent* a, SharedCounters* shared) {
  a->loop->Step(now, absl::ZeroDuration());
  if (!a->welcomed && a->loop->session().state() == AgentSession::State::kReady) {
    a->welcomed = true;
    shared->welcomed.fetch_add(1);
  }
  if (!a->acknowledged && a->loop->tasks_run() > 0 && !a->loop->busy() &&
      !a->loop->session().unacknowledged().has_value()) {
    a->acknowledged = true;
    shared->acknowledged.fetch_add(1);
  }
}

// Relays in this process, each with its agents over the in-memory transport
// and one thread stepping both; up to the coordinator over ZeroMQ with CURVE.
int RunInMemoryFleet(int n, const std::vector<CurveKeyPair>& relay_keys,
                     const std::string& root_key, const std::string& root_endpoint,
                     SharedCounters* shared) {
  const int r = static_cast<int>(relay_keys.size());
  std::vector<InMemoryNetwork> networks(r);
  std::vector<std::unique_ptr<Transport>> downs(r);
  std::vector<std::unique_ptr<ZmqClientTransport>> ups(r);
  std::vector<std::unique_ptr<RelayService>> relays(r);
  std::vector<std::vector<LoadAgent>> agents(r);
  for (int k = 0; k < r; ++k) {
    ZmqClientOptions up;
    up.endpoint = root_endpoint;
    up.identity = absl::StrCat("relay-", k);
    up.curve = CurveClientConfig{relay_keys[k], root_key};
    absl::StatusOr<std::unique_ptr<ZmqClientTransport>> link = ZmqClientTransport::Create(up);
    if (!link.ok()) {
      std::fprintf(stderr, "load_generator: relay %d: %s\n", k, link.status().ToString().c_str());
      return 1;
    }
    ups[k] = std::move(*link);
    downs[k] = networks[k].Bind();
    RelayOptions options;
    options.upstream.device_id = up.identity;
    options.upstream.registration = Register{uint64_t{1} << 40, 1, 0, "load-generator relay"};
    options.upstream.coordinator_timeout = absl::Seconds(600);
    options.liveness.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_ms));
    options.liveness.timeout = absl::Seconds(600);
    options.log = false;
    relays[k] = std::make_unique<RelayService>(options, ups[k].get(), downs[k].get());
    for (int i = k; i < n; i += r) {
      const std::string id = absl::StrCat("load-", i);
      agents[k].emplace_back();
      MakeAgent(id, std::make_unique<CountingTransport>(networks[k].Connect(id)), &agents[k].back());
    }
  }
  auto worker = [&](int k) {
    while (!shared->stop.load()) {
      // The relay in between every 128 agents: what they send is taken in
      // as it comes, not queued up for the whole fleet.
      for (size_t a = 0; a < agents[k].size(); ++a) {
        if (a % 128 == 0) (void)relays[k]->Step(absl::Now(), absl::ZeroDuration());
        StepAgent(absl::Now(), &agents[k][a], shared);
      }
      (void)relays[k]->Step(absl::Now(), absl::ZeroDuration());
    }
  };
  std::vector<std::thread> pool;
  for (int k = 0; k < r; ++k) pool.emplace_back(worker, k);
  for (std::thread& t : pool) t.join();
  for (const std::vector<LoadAgent>& list : agents) {
    for (const LoadAgent& a : list) {
      shared->bytes_in += a.link->bytes_in;
      shared->bytes_out += a.link->bytes_out;
      shared->messages += a.link->messages_in + a.link->messages_out;
    }
  }
  return 0;
}

// Agent i connects to endpoints[i % endpoints.size()] with the server key
// of the same index.
int RunAgents(const std::vector<CurveKeyPair>& keys, const std::vector<std::string>& server_keys,
              const std::vector<std::string>& endpoints, int first, int step, int threads,
              SharedCounters* shared) {
  std::vector<int> mine;
  for (int i = first; i < static_cast<int>(keys.size()); i += step) mine.push_back(i);
  const int n = static_cast<int>(mine.size());
  absl::StatusOr<std::shared_ptr<ZmqContext>> context =
      ZmqContext::Create(absl::GetFlag(FLAGS_io_threads), 2 * n + 64);
  if (!context.ok()) {
    std::fprintf(stderr, "load_generator: %s\n", context.status().ToString().c_str());
    return 1;
  }
  std::vector<LoadAgent> agents(n);
  for (int k = 0; k < n; ++k) {
    const int i = mine[k];
    ZmqClientOptions options;
    options.endpoint = endpoints[i % endpoints.size()];
    options.identity = absl::StrCat("load-", i);
    options.curve = CurveClientConfig{keys[i], server_keys[i % server_keys.size()]};
    options.context = *context;
    options.link_timeout = absl::ZeroDuration();  // TCP keepalive: thousands per I/O thread
    options.monitor_connections = false;
    absl::StatusOr<std::unique_ptr<ZmqClientTransport>> link = ZmqClientTransport::Create(options);
    if (!link.ok()) {
      std::fprintf(stderr, "load_generator: agent %d: %s\n", i, link.status().ToString().c_str());
      return 1;
    }
    MakeAgent(options.identity, std::make_unique<CountingTransport>(std::move(*link)), &agents[k]);
  }
  auto worker = [&](int t) {
    while (!shared->stop.load()) {
      const absl::Time now = absl::Now();
      for (int k = t; k < n; k += threads) StepAgent(now, &agents[k], shared);
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (std::thread& t : pool) t.join();
  for (const LoadAgent& a : agents) {
    shared->bytes_in += a.link->bytes_in;
    shared->bytes_out += a.link->bytes_out;
    shared->messages += a.link->messages_in + a.link->messages_out;
  }
  return 0;
}

// Starts `args` (argv[0] a binary) and returns its pid.
absl::StatusOr<pid_t> Spawn(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot start ", argv[0]));
  }
  return pid;
}

// Waits until `pid` listens: its RSS stops growing once its start-up is done.
absl::Status WaitForStartUp(pid_t pid, const std::string& what) {
  const auto boot = Clock::now();
  int64_t last_rss = -1;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return absl::InternalError(absl::StrCat("the ", what, " exited during start-up (see its log above)"));
    }
    const int64_t rss = StatusBytes(pid, "VmRSS:");
    if (rss == last_rss && Since(boot) > 3) return absl::OkStatus();
    last_rss = rss;
  }
}

bool RoundAggregated(const std::string& state_dir) {
  std::ifstream metrics(state_dir + "/metrics.jsonl");
  std::string line;
  return std::getline(metrics, line) && line.find("\"round\"") != std::string::npos;
}

absl::Status Run() {
  const int n = absl::GetFlag(FLAGS_agents);
  const int threads = absl::GetFlag(FLAGS_threads);
  const int relay_count = absl::GetFlag(FLAGS_relays);
  const bool in_memory = absl::GetFlag(FLAGS_in_memory_agents);
  if (n < 1 || n > 200000 || threads < 1 || threads > 64 || relay_count < 0 || relay_count > 64) {
    return absl::InvalidArgumentError(
        "--agents in [1, 200000], --threads in [1, 64], --relays in [0, 64]");
  }
  if (in_memory && relay_count == 0) {
    return absl::InvalidArgumentError("--in_memory_agents needs --relays");
  }
  // Per agent: a TCP socket and its socket's mailbox here (the connection
  // monitor is off), one socket in the coordinator or its relay (which
  // inherit the limit).
  const rlim_t files = RaiseFileLimit(in_memory ? 4096 : static_cast<rlim_t>(3) * n + 4096);
  if (!in_memory && files < static_cast<rlim_t>(n) / std::max(1, relay_count) + 1024) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the coordinator (or a relay) needs a descriptor per agent: open-file limit ", files,
        " for ", n, " agents"));
  }
  const int per_process = static_cast<int>((files - 1024) / 3);
  const int processes = in_memory                        ? 1
                        : absl::GetFlag(FLAGS_processes) > 0 ? absl::GetFlag(FLAGS_processes)
                                                             : (n + per_process - 1) / per_process;
  if (!in_memory && (processes < 1 || processes > 64 || (n + processes - 1) / processes > per_process)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--processes: ", processes, " processes cannot hold ", n, " agents at ", per_process,
        " each (open-file limit ", files, ")"));
  }

  // Keys: the coordinator's, each relay's (enrolled on it as a relay) and
  // each agent's (enrolled on the coordinator, or on its relay).
  const std::string dir = absl::GetFlag(FLAGS_work_dir);
  RETURN_IF_ERROR(CreateDirectories(dir + "/state"));
  (void)std::remove((dir + "/state/checkpoint.bin").c_str());
  (void)std::remove((dir + "/state/metrics.jsonl").c_str());
  ASSIGN_OR_RETURN(const CurveKeyPair server_keys, GenerateCurveKeyPair());
  RETURN_IF_ERROR(WriteKeyPair(server_keys, dir + "/coordinator"));
  std::vector<CurveKeyPair> relay_keys(relay_count);
  std::string root_allowlist;
  std::vector<std::string> relay_allowlists(relay_count);
  for (int r = 0; r < relay_count; ++r) {
    ASSIGN_OR_RETURN(relay_keys[r], GenerateCurveKeyPair());
    RETURN_IF_ERROR(WriteKeyPair(relay_keys[r], absl::StrCat(dir, "/relay-", r)));
    absl::StrAppend(&root_allowlist, "relay-", r, " ", relay_keys[r].public_key, " relay\n");
  }
  std::vector<CurveKeyPair> keys(in_memory ? 0 : n);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSIGN_OR_RETURN(keys[i], GenerateCurveKeyPair());
    const std::string line = absl::StrCat("load-", i, " ", keys[i].public_key, "\n");
    absl::StrAppend(relay_count > 0 ? &relay_allowlists[i % relay_count] : &root_allowlist, line);
  }
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/allowlist", root_allowlist));

  const std::string endpoint = absl::StrCat("tcp://127.0.0.1:", absl::GetFlag(FLAGS_port));
  ASSIGN_OR_RETURN(pid_t coordinator, Spawn({
      absl::GetFlag(FLAGS_coordinator),
      "--listen=" + endpoint,
      "--key=" + dir + "/coordinator",
      "--allowlist=" + dir + "/allowlist",
      "--state_dir=" + dir + "/state",
      "--arch=" + absl::GetFlag(FLAGS_arch),
      "--downlink=" + absl::GetFlag(FLAGS_downlink),
      "--schedule=pretrain:1",
      absl::StrCat("--min_agents=", n),  // counted in agents, across relays
      "--deadline_s=600",
      // Relays report their load in heartbeats: with relays, a short interval.
      absl::StrCat("--heartbeat_ms=", relay_count > 0 ? 500 : absl::GetFlag(FLAGS_heartbeat_ms)),
      "--agent_timeout_s=600",
      "--eval_samples=500",
      "--exit_when_done=false",  // acknowledgements still go out; stopped at the end
      "--link_timeout_s=0",  // TCP keepalive instead of libzmq's per-connection timers
      absl::StrCat("--send_queue=", 16),
  }));
  std::vector<pid_t> relays;
  auto stop_all = [&] {
    for (pid_t* pid : {&coordinator}) {
      if (*pid > 0) {
        kill(*pid, SIGTERM);
        waitpid(*pid, nullptr, 0);
        *pid = 0;
      }
    }
    for (pid_t& pid : relays) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
    relays.clear();
  };
  if (absl::Status up = WaitForStartUp(coordinator, "coordinator"); !up.ok()) {
    coordinator = 0;
    stop_all();
    return up;
  }
  const double cpu_idle = CpuSeconds(coordinator);
  const int64_t rss_idle = StatusBytes(coordinator, "VmRSS:");

  // The relays, as processes, or (in-memory agents) in the agents' process.
  std::vector<std::string> agent_endpoints = {endpoint};
  std::vector<std::string> agent_server_keys = {server_keys.public_key};
  if (relay_count > 0 && !in_memory) {
    agent_endpoints.clear();
    agent_server_keys.clear();
    for (int r = 0; r < relay_count; ++r) {
      const std::string listen = absl::StrCat("tcp://127.0.0.1:", absl::GetFlag(FLAGS_port) + 1 + r);
      const std::string prefix = absl::StrCat(dir, "/relay-", r);
      RETURN_IF_ERROR(WriteFileAtomically(prefix + ".allowlist", relay_allowlists[r]));
      absl::StatusOr<pid_t> relay = Spawn({
          absl::GetFlag(FLAGS_relay), absl::StrCat("--id=relay-", r), "--root=" + endpoint,
          "--root_key=" + dir + "/coordinator.pub", "--key=" + prefix, "--listen=" + listen,
          "--allowlist=" + prefix + ".allowlist",
          absl::StrCat("--heartbeat_ms=", absl::GetFlag(FLAGS_heartbeat_ms)),
          "--agent_timeout_s=600", "--root_timeout_s=600", "--link_timeout_s=0", "--send_queue=16"});
      if (!relay.ok()) {
        stop_all();
        return relay.status();
      }
      relays.push_back(*relay);
      agent_endpoints.push_back(listen);
      agent_server_keys.push_back(relay_keys[r].public_key);
    }
    for (pid_t relay : relays) {
      if (absl::Status up = WaitForStartUp(relay, "relay"); !up.ok()) {
        stop_all();
        return up;
      }
    }
  }

  // The agents, in their processes.
  auto* shared = static_cast<SharedCounters*>(mmap(nullptr, sizeof(SharedCounters),
                                                   PROT_READ | PROT_WRITE,
                                                   MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (shared == MAP_FAILED) return absl::InternalError("cannot map the shared counters");
  new (shared) SharedCounters();
  const auto connect_start = Clock::now();
  std::vector<pid_t> children;
  for (int p = 0; p < processes; ++p) {
    const pid_t child = fork();
    if (child == 0) {
      _exit(in_memory ? RunInMemoryFleet(n, relay_keys, server_keys.public_key, endpoint, shared)
                      : RunAgents(keys, agent_server_keys, agent_endpoints, p, processes, threads,
                                  shared));
    }
    if (child < 0) {
      shared->stop = true;
      for (pid_t c : children) waitpid(c, nullptr, 0);
      stop_all();
      return absl::InternalError("cannot start an agent process");
    }
    children.push_back(child);
  }

  double cpu_registered = -1, registration_seconds = -1;
  int64_t rss_registered = -1;
  Clock::time_point round_start;
  auto last_print = Clock::now();
  bool timed_out = false;
  const auto deadline = Clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_timeout_s));
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (cpu_registered < 0 && shared->welcomed.load() == n) {
      cpu_registered = CpuSeconds(coordinator);
      rss_registered = StatusBytes(coordinator, "VmRSS:");
      round_start = Clock::now();
      registration_seconds = Since(connect_start);
    }
    if (shared->acknowledged.load() == n &&
        (relay_count == 0 || RoundAggregated(dir + "/state"))) {
      break;
    }
    if (Since(last_print) > 2) {
      last_print = Clock::now();
      std::fprintf(stderr, "  %.0f s: %d/%d welcomed, %d/%d results acknowledged, coordinator RSS %.0f MB\n",
                   Since(connect_start), shared->welcomed.load(), n, shared->acknowledged.load(), n,
                   StatusBytes(coordinator, "VmRSS:") / 1e6);
    }
    int status = 0;
    for (pid_t c : children) {
      if (waitpid(c, &status, WNOHANG) == c) {
        std::fprintf(stderr, "load_generator: an agent process exited early\n");
        timed_out = true;
      }
    }
    if (timed_out || Clock::now() > deadline) {
      timed_out = true;
      break;
    }
  }
  const double round_seconds = Since(round_start);
  const double cpu_round = CpuSeconds(coordinator);
  const int64_t rss_peak = StatusBytes(coordinator, "VmHWM:");
  // The relays' CPU and largest peak RSS (in-memory: the process holding the
  // relays and all their agents).
  double relay_cpu = 0, agents_cpu = 0;
  int64_t relay_peak = 0;
  if (!in_memory) {
    for (pid_t pid : children) agents_cpu += CpuSeconds(pid);
  }
  for (pid_t pid : in_memory ? children : relays) {
    relay_cpu += CpuSeconds(pid);
    relay_peak = std::max(relay_peak, StatusBytes(pid, "VmHWM:"));
  }
  shared->stop = true;
  for (pid_t c : children) waitpid(c, nullptr, 0);
  stop_all();
  if (timed_out) {
    // (stop_all ran above)
    return absl::DeadlineExceededError(absl::StrCat(shared->welcomed.load(), " of ", n, " welcomed, ",
                                                    shared->acknowledged.load(), " acknowledged"));
  }
  const int64_t bytes_in = shared->bytes_in, bytes_out = shared->bytes_out,
                messages = shared->messages;

  const std::string layout =
      relay_count == 0 ? "over ZeroMQ with CURVE on loopback (own keys)"
      : in_memory
          ? absl::StrCat("through ", relay_count,
                         " relays (ZeroMQ with CURVE up to the coordinator; agents in memory below)")
          : absl::StrCat("through ", relay_count,
                         " relays, all over ZeroMQ with CURVE on loopback (own keys)");
  std::printf("\n%d agents %s, %s, %s downlink, sign-ef uplink; %d agent process(es) x %d "
              "thread(s)\n\n",
              n, layout.c_str(), absl::GetFlag(FLAGS_arch).c_str(),
              absl::GetFlag(FLAGS_downlink).c_str(), processes, in_memory ? relay_count : threads);
  std::printf("%-58s %14s\n", "figure", "value");
  std::printf("%-58s %14.2f\n", "registration: all agents welcomed (s)", registration_seconds);
  std::printf("%-58s %14.2f\n", "round: last Welcome to last result acknowledged (s)", round_seconds);
  std::printf("%-58s %14.2f\n", "coordinator CPU while agents registered (s)", cpu_registered - cpu_idle);
  std::printf("%-58s %14.2f\n", "coordinator CPU in the round (s)", cpu_round - cpu_registered);
  std::printf("%-58s %14.1f\n", "coordinator RSS before agents (MB)", rss_idle / 1e6);
  std::printf("%-58s %14.1f\n", "coordinator RSS with all registered (MB)", rss_registered / 1e6);
  std::printf("%-58s %14.1f\n", "  growth per connection (kB)", (rss_registered - rss_idle) / 1e3 / n);
  std::printf("%-58s %14.1f\n", "coordinator peak RSS (MB)", rss_peak / 1e6);
  std::printf("%-58s %14.1f\n", "downlink per connection (kB, frames)", bytes_in / 1e3 / n);
  std::printf("%-58s %14.1f\n", "uplink per connection (kB, frames)", bytes_out / 1e3 / n);
  std::printf("%-58s %14.0f\n", "messages per second (both ways, whole run)",
              messages / (registration_seconds + round_seconds));
  if (!in_memory) {
    std::printf("%-58s %14.2f\n", "agent processes' CPU, whole run (s)", agents_cpu);
  }
  if (relay_count > 0) {
    std::printf("%-58s %14.2f\n",
                in_memory ? "relays + in-memory agents process CPU, whole run (s)"
                          : "relays' CPU, whole run, all relays (s)",
                relay_cpu);
    std::printf("%-58s %14.1f\n",
                in_memory ? "relays + in-memory agents process peak RSS (MB)"
                          : "largest relay peak RSS (MB)",
                relay_peak / 1e6);
  }
  const std::string out = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(out));
  const std::string name =
      relay_count == 0 ? "load_generator"
                       : absl::StrCat("load_generator_relays", in_memory ? "_in_memory" : "", "_", n);
  std::ofstream(out + "/" + name + ".json") << absl::StrFormat(
      "{\"agents\": %d, \"relays\": %d, \"in_memory_agents\": %s, "
      "\"relay_cpu_s\": %.3f, \"relay_peak_rss_bytes\": %d, \"arch\": \"%s\", \"downlink\": \"%s\", \"registration_seconds\": %.3f, "
      "\"round_seconds\": %.3f, \"coordinator_cpu_registration_s\": %.3f, "
      "\"coordinator_cpu_round_s\": %.3f, \"rss_idle_bytes\": %d, \"rss_registered_bytes\": %d, "
      "\"rss_per_connection_bytes\": %.0f, \"rss_peak_bytes\": %d, "
      "\"downlink_bytes_per_connection\": %.0f, \"uplink_bytes_per_connection\": %.0f, "
      "\"messages_per_second\": %.1f}\n",
      n, relay_count, in_memory ? "true" : "false", relay_cpu, relay_peak, agents_cpu,
      absl::GetFlag(FLAGS_arch), absl::GetFlag(FLAGS_downlink), registration_seconds,
      round_seconds, cpu_registered - cpu_idle, cpu_round - cpu_registered, rss_idle,
      rss_registered, static_cast<double>(rss_registered - rss_idle) / n, rss_peak,
      static_cast<double>(bytes_in) / n, static_cast<double>(bytes_out) / n,
      messages / (registration_seconds + round_seconds));
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // The agents receive gigabytes in 64 KiB frames: keep freed heap instead of
  // handing it back and faulting fresh pages in for the next frame.
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  const absl::Status status = fedge::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "load_generator: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
