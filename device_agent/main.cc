// The device agent: loads its local data (its own with --data, else its
// share of Fashion-MNIST for simulations), connects to the coordinator,
// registers with its memory budget, heartbeats, runs each task it is given
// (one phase of local training with memory-saving backprop) on a worker
// thread while it keeps heartbeating, sends back the encoded update, and
// reconnects and registers again by itself. Stops cleanly on SIGTERM.
//
//   agent --device_id=board-7 --coordinator=tcp://10.0.0.2:7070
//       --key=/var/lib/fedge/keys/board-7 --server_key=/etc/fedge/coordinator.pub
//       --memory_budget_mb=512 --partition=dirichlet:0.5 --num_agents=10 --agent_index=7
//   agent ... --arch=cnv --data=/data/board-7   (DIR/CLASS/*.png, or IMAGES,LABELS IDX)

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/env/process_memory.h"
#include "common/io/file_util.h"
#include "common/io/flags_help.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "common/transport/failover_transport.h"
#include "common/transport/zmq_transport.h"
#include "device_agent/agent_loop.h"
#include "device_agent/task_executor.h"
#include "device_agent/task_runner.h"
#include "models/memory/counting_allocator.h"
#include "models/bnn/arch.h"
#include "models/data/dataset.h"
#include "models/data/local_data.h"
#include "models/data/partition.h"
#include "models/family/federated_model.h"

ABSL_FLAG(std::string, device_id, "", "this device's id (as enrolled on the coordinator)");
ABSL_FLAG(std::string, coordinator, "tcp://127.0.0.1:7070",
          "the coordinator's endpoint, or a comma-separated list (relays, the root): the agent "
          "connects to the first and fails over to the next when one goes silent");
ABSL_FLAG(std::string, key, "", "path prefix of this agent's CURVE key pair");
ABSL_FLAG(std::string, server_key, "",
          "the coordinator's public key file; with several endpoints, one file for all or a "
          "comma-separated list, one per endpoint");
ABSL_FLAG(int, failover_s, 90,
          "with several --coordinator endpoints: move to the next after this long without a "
          "message from the current one (must exceed the longest task download)");
ABSL_FLAG(bool, plaintext, false, "connect without CURVE (loopback development only)");
ABSL_FLAG(int, memory_budget_mb, 512, "memory this device may use for training");
ABSL_FLAG(int, cores, 1, "cores for training");
ABSL_FLAG(std::string, arch, "fmnist-cnn",
          "model (must match the coordinator): fmnist-cnn, fmnist-mlp (mixed precision), mlp, "
          "cnv, binarynet (binary, memory-saving backprop)");
ABSL_FLAG(std::string, input_shape, "",
          "binary networks: the input CxHxW (must match the coordinator; default: the "
          "network's, or the --data images' shape)");
ABSL_FLAG(std::string, data, "",
          "this device's own data: a directory of class subfolders of PNG/JPEG images, a "
          "directory holding one IDX image and one IDX label file, or IMAGES,LABELS; empty: a "
          "share of Fashion-MNIST (simulations)");
ABSL_FLAG(double, holdout, 0.1, "--data: share of the samples held out for local accuracy");
ABSL_FLAG(std::string, data_dir, fedge::kFashionMnistDir, "Fashion-MNIST IDX files");
ABSL_FLAG(std::string, partition, "dirichlet:0.5", "iid or dirichlet:ALPHA");
ABSL_FLAG(int, num_agents, 1, "agents the training set is split across");
ABSL_FLAG(int, agent_index, 0, "which part of the split is this device's");
ABSL_FLAG(int64_t, train_samples, -1, "use only the first N training samples (-1: all)");
ABSL_FLAG(uint64_t, seed, 1, "partition seed (the same on every agent)");
ABSL_FLAG(std::string, state_dir, "", "keeps the error-feedback residual across restarts");
ABSL_FLAG(int, coordinator_timeout_s, 90,
          "no message from the coordinator for this long: register again (must exceed the "
          "longest task download on this board's link)");
ABSL_FLAG(int, link_timeout_s, 60,
          "drop the connection when no whole frame arrives for this long (must exceed the "
          "download time of the largest tensor)");
ABSL_FLAG(int, result_retry_s, 30, "send an unacknowledged result again this often");
ABSL_FLAG(bool, check_config, false,
          "validate the flags, keys and local data, print what this agent would do and exit");

namespace fedge {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

absl::StatusOr<Dataset> FashionMnistShare(const ModelSpec& model) {
  ASSIGN_OR_RETURN(const int pad, FashionMnistPadding(model));
  ASSIGN_OR_RETURN(const Dataset all, LoadFashionMnist(absl::GetFlag(FLAGS_data_dir), DataSplit::kTrain,
                                                       {absl::GetFlag(FLAGS_train_samples), pad}));
  const int agents = absl::GetFlag(FLAGS_num_agents), index = absl::GetFlag(FLAGS_agent_index);
  if (index < 0 || index >= agents) {
    return absl::InvalidArgumentError(absl::StrCat("--agent_index=", index, " is not in [0, ", agents, ")"));
  }
  ASSIGN_OR_RETURN(const PartitionSpec spec,
                   ParsePartition(absl::GetFlag(FLAGS_partition), agents, absl::GetFlag(FLAGS_seed)));
  const at::Tensor labels = all.labels.contiguous();
  std::vector<int> label_list(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
  ASSIGN_OR_RETURN(const auto parts, Partition(label_list, 10, spec));
  Dataset mine;
  RETURN_IF_ERROR(CallTorch("selecting the local partition", [&] {
    mine = Subset(all, at::tensor(parts[index], at::kLong));
    return absl::OkStatus();
  }));
  return mine;
}

// The model and the data it trains on, checked against each other.
struct LocalSetup {
  ModelSpec spec;
  LocalData data;
};

absl::StatusOr<LocalSetup> LoadModelAndData() {
  LocalSetup setup;
  std::optional<InputShape> input;
  if (!absl::GetFlag(FLAGS_input_shape).empty()) {
    absl::StatusOr<InputShape> parsed = ParseInputShape(absl::GetFlag(FLAGS_input_shape));
    if (!parsed.ok()) return Annotate(parsed.status(), "--input_shape");
    input = *parsed;
  }
  absl::StatusOr<ModelSpec> spec = MakeModelSpec(absl::GetFlag(FLAGS_arch), input);
  if (!spec.ok()) return Annotate(spec.status(), "--arch");
  setup.spec = *std::move(spec);
  const std::string path = absl::GetFlag(FLAGS_data);
  if (path.empty()) {
    ASSIGN_OR_RETURN(setup.data.train, FashionMnistShare(setup.spec));
    setup.data.source = absl::GetFlag(FLAGS_data_dir);
    return setup;
  }
  LocalDataOptions options;
  options.holdout = absl::GetFlag(FLAGS_holdout);
  options.seed = absl::GetFlag(FLAGS_seed);
  options.limit = absl::GetFlag(FLAGS_train_samples);
  absl::StatusOr<LocalData> data = LoadLocalData(path, options);
  if (!data.ok()) return Annotate(data.status(), "--data");
  setup.data = *std::move(data);
  // A binary network is built for the data's shape unless told otherwise.
  const Dataset& train = setup.data.train;
  if (!input && setup.spec.family == ModelFamily::kBinary) {
    spec = MakeModelSpec(absl::GetFlag(FLAGS_arch),
                         InputShape{train.channels(), train.height(), train.width()});
    if (!spec.ok()) return Annotate(spec.status(), "--arch");
    setup.spec = *std::move(spec);
  }
  RETURN_IF_ERROR(Annotate(CheckInput(train, setup.spec.input, setup.spec.num_classes,
                                      setup.data.source),
                           "--data"));
  return setup;
}

absl::Status RunAgent() {
  const std::string id = absl::GetFlag(FLAGS_device_id);
  if (id.empty()) return absl::InvalidArgumentError("--device_id is required");
  if (absl::GetFlag(FLAGS_memory_budget_mb) < 1 || absl::GetFlag(FLAGS_cores) < 1) {
    return absl::InvalidArgumentError("--memory_budget_mb and --cores must be positive");
  }
  if (absl::GetFlag(FLAGS_coordinator_timeout_s) < 2 || absl::GetFlag(FLAGS_link_timeout_s) < 2 ||
      absl::GetFlag(FLAGS_result_retry_s) < 1) {
    return absl::InvalidArgumentError(
        "--coordinator_timeout_s and --link_timeout_s must be >= 2, --result_retry_s >= 1");
  }
  // What the agent will write (the error-feedback residual after every
  // sign-ef task) must be writable now, not found out after training.
  if (!absl::GetFlag(FLAGS_state_dir).empty()) {
    RETURN_IF_ERROR(Annotate(CheckWritableDirectory(absl::GetFlag(FLAGS_state_dir)), "--state_dir"));
  }
  // Activation tensors come and go every step: map them, and give freed
  // memory back, so the resident set follows the training peak.
  TuneAllocatorForSmallFootprint();
  CountingCpuAllocator::Install();
  at::set_num_threads(absl::GetFlag(FLAGS_cores));
  if (!(absl::GetFlag(FLAGS_holdout) >= 0 && absl::GetFlag(FLAGS_holdout) < 1)) {
    return absl::InvalidArgumentError("--holdout must be in [0, 1)");
  }
  ASSIGN_OR_RETURN(LocalSetup setup, LoadModelAndData());
  ASSIGN_OR_RETURN(std::unique_ptr<FederatedModel> model, FederatedModel::Create(setup.spec));
  const std::string description = setup.spec.Describe();
  const int64_t held_out = setup.data.held_out.size();
  TaskRunnerOptions runner_options;
  if (!absl::GetFlag(FLAGS_state_dir).empty()) {
    runner_options.residual_path = absl::GetFlag(FLAGS_state_dir) + "/" + id + ".residual";
  }
  TaskRunner runner(std::move(model), std::move(setup.data.train), std::move(setup.data.held_out),
                    runner_options);
  if (absl::Status s = runner.LoadResidual(); !s.ok()) {
    std::fprintf(stderr, "[%s] error-feedback residual not loaded, starting from zero: %s\n",
                 id.c_str(), s.ToString().c_str());
  }

  ZmqClientOptions client;
  const std::vector<std::string> endpoints =
      absl::StrSplit(absl::GetFlag(FLAGS_coordinator), ',', absl::SkipEmpty());
  if (endpoints.empty()) return absl::InvalidArgumentError("--coordinator names no endpoint");
  client.endpoint = endpoints[0];
  client.identity = id;
  // On SIGTERM the last message (the task given up) must still go out.
  client.linger = absl::Milliseconds(500);
  client.link_timeout = absl::Seconds(absl::GetFlag(FLAGS_link_timeout_s));
  std::vector<std::string> server_keys;
  if (!absl::GetFlag(FLAGS_plaintext)) {
    if (absl::GetFlag(FLAGS_key).empty() || absl::GetFlag(FLAGS_server_key).empty()) {
      return absl::InvalidArgumentError(
          "CURVE needs --key and --server_key (or --plaintext for loopback development)");
    }
    const std::vector<std::string> key_files =
        absl::StrSplit(absl::GetFlag(FLAGS_server_key), ',', absl::SkipEmpty());
    if (key_files.size() != 1 && key_files.size() != endpoints.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--server_key names ", key_files.size(), " keys for ", endpoints.size(),
          " endpoints: give one for all or one per endpoint"));
    }
    for (const std::string& file : key_files) {
      ASSIGN_OR_RETURN(std::string key, ReadPublicKey(file));
      server_keys.push_back(std::move(key));
    }
    CurveClientConfig curve;
    ASSIGN_OR_RETURN(curve.keys, ReadKeyPair(absl::GetFlag(FLAGS_key)));
    curve.server_public_key = server_keys[0];
    client.curve = curve;
  }
  if (absl::GetFlag(FLAGS_failover_s) < 2) {
    return absl::InvalidArgumentError("--failover_s must be >= 2");
  }
  if (absl::GetFlag(FLAGS_check_config)) {
    std::printf("configuration OK: %s, %lld local samples (%lld held out), %d MB budget, %s, "
                "coordinator %s (%s)\n",
                id.c_str(), static_cast<long long>(runner.samples()),
                static_cast<long long>(held_out), absl::GetFlag(FLAGS_memory_budget_mb),
                description.c_str(), absl::GetFlag(FLAGS_coordinator).c_str(),
                client.curve ? "CURVE" : "PLAINTEXT");
    return absl::OkStatus();
  }
  // One endpoint after another; the key that goes with each.
  auto connect = [&client, &endpoints, &server_keys](const std::string& endpoint)
      -> absl::StatusOr<std::unique_ptr<Transport>> {
    ZmqClientOptions options = client;
    options.endpoint = endpoint;
    if (options.curve && server_keys.size() > 1) {
      const size_t index = std::find(endpoints.begin(), endpoints.end(), endpoint) - endpoints.begin();
      options.curve->server_public_key = server_keys[std::min(index, server_keys.size() - 1)];
    }
    ASSIGN_OR_RETURN(std::unique_ptr<ZmqClientTransport> link, ZmqClientTransport::Create(options));
    return std::unique_ptr<Transport>(std::move(link));
  };
  ASSIGN_OR_RETURN(std::unique_ptr<FailoverTransport> transport,
                   FailoverTransport::Create(endpoints, connect));

  AgentLoopOptions loop_options;
  SessionOptions& session_options = loop_options.session;
  session_options.device_id = id;
  session_options.registration.memory_budget_bytes =
      static_cast<uint64_t>(absl::GetFlag(FLAGS_memory_budget_mb)) << 20;
  session_options.registration.cores = static_cast<uint16_t>(absl::GetFlag(FLAGS_cores));
  session_options.registration.samples = static_cast<uint64_t>(runner.samples());
  session_options.registration.agent_version = "fedge 0.1";
  session_options.coordinator_timeout = absl::Seconds(absl::GetFlag(FLAGS_coordinator_timeout_s));
  session_options.result_retry = absl::Seconds(absl::GetFlag(FLAGS_result_retry_s));
  loop_options.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  if (endpoints.size() > 1) {
    loop_options.fail_over = [&transport, id]() -> absl::Status {
      RETURN_IF_ERROR(transport->Failover());
      std::fprintf(stderr, "[%s] now connecting to %s\n", id.c_str(), transport->endpoint().c_str());
      return absl::OkStatus();
    };
    loop_options.failover_after = absl::Seconds(absl::GetFlag(FLAGS_failover_s));
  }
  std::fprintf(stderr, "[%s] %s; %lld local samples (%lld held out), %d MB budget, connecting to %s (%s)\n",
               id.c_str(), description.c_str(), static_cast<long long>(runner.samples()),
               static_cast<long long>(held_out), absl::GetFlag(FLAGS_memory_budget_mb),
               absl::GetFlag(FLAGS_coordinator).c_str(), client.curve ? "CURVE" : "PLAINTEXT");

  // Training runs on a worker thread while the loop keeps heartbeating.
  ThreadedExecutor executor([&runner, id](const Task& task, const std::atomic<bool>* cancel) {
    absl::StatusOr<TaskResult> result = runner.Run(task, cancel);
    if (!runner.residual_error().ok()) {
      std::fprintf(stderr,
                   "[%s] error-feedback residual not saved: %s; the file keeps the last good "
                   "one\n",
                   id.c_str(), runner.residual_error().ToString().c_str());
    }
    return result;
  });
  AgentLoop loop(transport.get(), &executor, loop_options);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  while (!g_stop) loop.Step(absl::Now(), absl::Milliseconds(50));
  // Stop training after the step in flight and tell the coordinator, which
  // counts the task out of the round's quorum.
  loop.Stop(absl::Now(), "agent stopping (SIGTERM)");
  transport.reset();  // waits up to the linger for the last message to go out
  std::fprintf(stderr, "[%s] stopped\n", id.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace fedge

int main(int argc, char** argv) {
  fedge::SetUpHelp("device_agent/main.cc",
                   "the device agent: trains the coordinator's tasks on this board's data.\n\n"
                   "  agent --device_id=board-7 --coordinator=tcp://10.0.0.2:7070 "
                   "--key=KEYS/board-7 --server_key=coordinator.pub --memory_budget_mb=512");
  absl::ParseCommandLine(argc, argv);
  const absl::Status status = fedge::RunAgent();
  if (!status.ok()) {
    std::fprintf(stderr, "agent: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
