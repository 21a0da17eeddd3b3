#ifndef FEDGE_COMMON_FLAGS_HELP_H_
#define FEDGE_COMMON_FLAGS_HELP_H_

// Makes `--help` list a program's own flags. Abseil's --help shows the
// flags of files named after the program ("agent.cc", "agent_main.cc"); ours
// live in "<package>/main.cc" and the like, so --help printed "No flags
// matched" and only --helpfull listed them. Call before ParseCommandLine.
//
//   SetUpHelp("device_agent/main.cc", "the device agent: agent --device_id=board-7 ...");
//
// Not thread-safe (start-up only).

#include <string>

#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace fedge {

inline void SetUpHelp(absl::string_view flags_file, absl::string_view usage) {
  static std::string* file = nullptr;
  file = new std::string(flags_file);
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view path) { return absl::EndsWith(path, *file); };
  config.contains_helpshort_flags = config.contains_help_flags;
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
}

}  // namespace fedge

#endif  // FEDGE_COMMON_FLAGS_HELP_H_
