#ifndef FEDGE_COMMON_ENV_PROCESS_MEMORY_H_
#define FEDGE_COMMON_ENV_PROCESS_MEMORY_H_

// This process's resident memory as Linux reports it (/proc/self/status):
// the current resident set (VmRSS) and its peak (VmHWM), which
// ResetPeakRss() restarts from the current RSS (/proc/self/clear_refs), so
// a task's peak can be measured on its own. 0 where the kernel does not
// say. Thread-safe.

#include <cstdint>

namespace fedge {

int64_t CurrentRssBytes();
int64_t PeakRssBytes();
// False when the kernel refused (then PeakRssBytes is the process's peak).
bool ResetPeakRss();

}  // namespace fedge

#endif  // FEDGE_COMMON_ENV_PROCESS_MEMORY_H_
