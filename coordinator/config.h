#ifndef FEDGE_COORDINATOR_CONFIG_H_
#define FEDGE_COORDINATOR_CONFIG_H_

// The coordinator's configuration: the raw flag values (CoordinatorFlags,
// filled by main.cc and nothing else) parsed and checked into what the
// service, the transport and the reporting need (CoordinatorConfig). Every
// bad value is refused here with a message naming the flag, before anything
// starts. Pure: no files are read.
//
//   CoordinatorFlags flags;  flags.schedule = "pretrain:2,learn:3,finetune:2";
//   ASSIGN_OR_RETURN(CoordinatorConfig config, ParseCoordinatorConfig(flags));
//
// Thread-compatible.

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/round_engine.h"
#include "coordinator/service.h"
#include "models/family/model_spec.h"

namespace fedge {

struct CoordinatorFlags {
  std::string listen = "tcp://127.0.0.1:7070";
  std::string key, allowlist;
  bool plaintext = false;
  std::string state_dir = "coordinator_state";
  std::string arch = "fmnist-cnn";
  std::string input_shape;  // binary networks: CxHxW ("" : the default)
  std::string schedule = "pretrain:2,learn:3,finetune:2";
  double fraction = 1.0;
  int min_agents = 2;
  double quorum = 1.0;
  int deadline_s = 300;
  bool async = false;
  int local_steps = 60;
  int batch = 64;
  double lr = 1e-3;
  std::string lr_schedule = "constant";
  int quantizer_every = 1;
  double budget_bits = 2.0;
  double activation_budget_bits = 0;  // 0: budget_bits
  std::string penalty = "relative";
  std::string size_accounting = "reference";
  int pretrain_bits = 8;
  std::string uplink = "sign-ef";
  std::string downlink = "mixed";
  std::string rule = "fedavg";
  double max_update_norm = 0;
  double max_update_scale = 100;
  int link_timeout_s = 60;
  int send_queue = 1000;
  std::string server_optimizer = "fedavg";
  double server_lr = 0;  // 0: the optimizer's default (FedAvgM 1, FedAdam 1e-2)
  double server_momentum = 0.9;
  int heartbeat_ms = 1000;
  int agent_timeout_s = 30;
  int64_t eval_samples = 10000;
  int threads = 1;
  std::string metrics_address;
};

struct CoordinatorConfig {
  ModelSpec model;
  bool mixed_downlink = false;  // frozen layers' weights as codes (service.frozen_codings)
  ServiceOptions service;  // run, liveness, codecs, planner, server optimizer
  int total_rounds = 0;
  std::string listen;
  std::string key_path, allowlist_path;  // empty with plaintext
  bool plaintext = false;
  absl::Duration link_timeout;
  int send_queue = 1000;
  std::string state_dir;
  std::string metrics_address;
  int64_t eval_samples = 0;
  int threads = 1;
  int pretrain_bits = 8;
};

absl::StatusOr<CoordinatorConfig> ParseCoordinatorConfig(const CoordinatorFlags& flags);

// "pretrain:2,learn:3,finetune:2" -> three spans.
absl::StatusOr<std::vector<PhaseSpan>> ParseSchedule(const std::string& text);
// "fp32", "fp16", "sign-ef" or "q2".."q8" (bits set for q).
absl::Status ParseCodec(const std::string& text, Codec* codec, int* bits);

}  // namespace fedge

#endif  // FEDGE_COORDINATOR_CONFIG_H_
