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
#include "common/transport/zmq_transport.h"
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
int RunAgents(const std::vector<CurveKeyPair>& keys, const std::string& server_key,
              const std::string& endpoint, int first, int step, int threads,
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
    options.endpoint = endpoint;
    options.identity = absl::StrCat("load-", i);
    options.curve = CurveClientConfig{keys[i], server_key};
    options.context = *context;
    options.link_timeout = absl::ZeroDuration();  // TCP keepalive: thousands per I/O thread
    options.monitor_connections = false;
    absl::StatusOr<std::unique_ptr<ZmqClientTransport>> link = ZmqClientTransport::Create(options);
    if (!link.ok()) {
      std::fprintf(stderr, "load_generator: agent %d: %s\n", i, link.status().ToString().c_str());
      return 1;
    }
    agents[k].link = std::make_unique<CountingTransport>(std::move(*link));
    SyntheticTaskOptions task;
    task.value = 1e-3f;
    task.samples = 100;
    task.keep_task_payloads = false;
    agents[k].executor = std::make_unique<SyntheticExecutor>(task);
    AgentLoopOptions loop;
    loop.session.device_id = options.identity;
    loop.session.registration = Register{int64_t{256} << 20, 1, 100, "load-generator"};
    loop.session.max_register_retry = absl::Seconds(60);
    loop.session.coordinator_timeout = absl::Seconds(600);
    loop.session.result_retry = absl::Seconds(120);
    agents[k].loop = std::make_unique<AgentLoop>(agents[k].link.get(), agents[k].executor.get(), loop);
  }
  auto worker = [&](int t) {
    while (!shared->stop.load()) {
      const absl::Time now = absl::Now();
      for (int k = t; k < n; k += threads) {
        LoadAgent& a = agents[k];
        a.loop->Step(now, absl::ZeroDuration());
        if (!a.welcomed && a.loop->session().state() == AgentSession::State::kReady) {
          a.welcomed = true;
          shared->welcomed.fetch_add(1);
        }
        if (!a.acknowledged && a.loop->tasks_run() > 0 && !a.loop->busy() &&
            !a.loop->session().unacknowledged().has_value()) {
          a.acknowledged = true;
          shared->acknowledged.fetch_add(1);
        }
      }
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

absl::Status Run() {
  const int n = absl::GetFlag(FLAGS_agents);
  const int threads = absl::GetFlag(FLAGS_threads);
  if (n < 1 || n > 200000 || threads < 1 || threads > 64) {
    return absl::InvalidArgumentError("--agents in [1, 200000], --threads in [1, 64]");
  }
  // Per agent: a TCP socket and its socket's mailbox here (the connection
  // monitor is off), one socket in the coordinator (which inherits the limit).
  const rlim_t files = RaiseFileLimit(static_cast<rlim_t>(3) * n + 4096);
  if (files < static_cast<rlim_t>(n) + 1024) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the coordinator needs a descriptor per agent: open-file limit ", files, " for ", n,
        " agents"));
  }
  const int per_process = static_cast<int>((files - 1024) / 3);
  const int processes = absl::GetFlag(FLAGS_processes) > 0
                            ? absl::GetFlag(FLAGS_processes)
                            : (n + per_process - 1) / per_process;
  if (processes < 1 || processes > 64 || (n + processes - 1) / processes > per_process) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--processes: ", processes, " processes cannot hold ", n, " agents at ", per_process,
        " each (open-file limit ", files, ")"));
  }

  // Keys: the coordinator's and one per agent, enrolled in the allowlist.
  const std::string dir = absl::GetFlag(FLAGS_work_dir);
  RETURN_IF_ERROR(CreateDirectories(dir + "/state"));
  (void)std::remove((dir + "/state/checkpoint.bin").c_str());
  ASSIGN_OR_RETURN(const CurveKeyPair server_keys, GenerateCurveKeyPair());
  RETURN_IF_ERROR(WriteKeyPair(server_keys, dir + "/coordinator"));
  std::vector<CurveKeyPair> keys(n);
  std::string allowlist;
  for (int i = 0; i < n; ++i) {
    ASSIGN_OR_RETURN(keys[i], GenerateCurveKeyPair());
    absl::StrAppend(&allowlist, "load-", i, " ", keys[i].public_key, "\n");
  }
  RETURN_IF_ERROR(WriteFileAtomically(dir + "/allowlist", allowlist));

  const std::string endpoint = absl::StrCat("tcp://127.0.0.1:", absl::GetFlag(FLAGS_port));
  std::vector<std::string> args = {
      absl::GetFlag(FLAGS_coordinator),
      "--listen=" + endpoint,
      "--key=" + dir + "/coordinator",
      "--allowlist=" + dir + "/allowlist",
      "--state_dir=" + dir + "/state",
      "--arch=" + absl::GetFlag(FLAGS_arch),
      "--downlink=" + absl::GetFlag(FLAGS_downlink),
      "--schedule=pretrain:1",
      absl::StrCat("--min_agents=", n),
      "--deadline_s=600",
      absl::StrCat("--heartbeat_ms=", absl::GetFlag(FLAGS_heartbeat_ms)),
      "--agent_timeout_s=600",
      "--eval_samples=500",
      "--exit_when_done=false",
      "--link_timeout_s=0",  // TCP keepalive instead of libzmq's per-connection timers  // acknowledgements still go out; stopped at the end
      absl::StrCat("--send_queue=", 16),
  };
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t coordinator = 0;
  if (posix_spawn(&coordinator, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot start ", argv[0]));
  }
  auto stop_coordinator = [&] {
    if (coordinator > 0) {
      kill(coordinator, SIGTERM);
      waitpid(coordinator, nullptr, 0);
      coordinator = 0;
    }
  };
  // Until it listens: its RSS stops growing once the model is built.
  const auto boot = Clock::now();
  int64_t last_rss = -1;
  for (;;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    int status = 0;
    if (waitpid(coordinator, &status, WNOHANG) == coordinator) {
      coordinator = 0;
      return absl::InternalError("the coordinator exited during start-up (see its log above)");
    }
    const int64_t rss = StatusBytes(coordinator, "VmRSS:");
    if (rss == last_rss && Since(boot) > 3) break;
    last_rss = rss;
  }
  const double cpu_idle = CpuSeconds(coordinator);
  const int64_t rss_idle = StatusBytes(coordinator, "VmRSS:");

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
      _exit(RunAgents(keys, server_keys.public_key, endpoint, p, processes, threads, shared));
    }
    if (child < 0) {
      shared->stop = true;
      for (pid_t c : children) waitpid(c, nullptr, 0);
      stop_coordinator();
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
    if (shared->acknowledged.load() == n) break;
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
  shared->stop = true;
  for (pid_t c : children) waitpid(c, nullptr, 0);
  stop_coordinator();
  if (timed_out) {
    return absl::DeadlineExceededError(absl::StrCat(shared->welcomed.load(), " of ", n, " welcomed, ",
                                                    shared->acknowledged.load(), " acknowledged"));
  }
  const int64_t bytes_in = shared->bytes_in, bytes_out = shared->bytes_out,
                messages = shared->messages;

  std::printf("\n%d agents over ZeroMQ with CURVE on loopback (own keys), %s, %s downlink, "
              "sign-ef uplink; %d agent process(es) x %d thread(s)\n\n",
              n, absl::GetFlag(FLAGS_arch).c_str(), absl::GetFlag(FLAGS_downlink).c_str(), processes,
              threads);
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
  const std::string out = absl::GetFlag(FLAGS_out_dir);
  RETURN_IF_ERROR(CreateDirectories(out));
  std::ofstream(out + "/load_generator.json") << absl::StrFormat(
      "{\"agents\": %d, \"arch\": \"%s\", \"downlink\": \"%s\", \"registration_seconds\": %.3f, "
      "\"round_seconds\": %.3f, \"coordinator_cpu_registration_s\": %.3f, "
      "\"coordinator_cpu_round_s\": %.3f, \"rss_idle_bytes\": %d, \"rss_registered_bytes\": %d, "
      "\"rss_per_connection_bytes\": %.0f, \"rss_peak_bytes\": %d, "
      "\"downlink_bytes_per_connection\": %.0f, \"uplink_bytes_per_connection\": %.0f, "
      "\"messages_per_second\": %.1f}\n",
      n, absl::GetFlag(FLAGS_arch), absl::GetFlag(FLAGS_downlink), registration_seconds,
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
  const absl::Status status = fedge::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "load_generator: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
