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

// Sets glibc's malloc up for a small resident set in a process that trains:
// blocks of 128 kB and more are mapped and unmapped (glibc would otherwise
// raise that threshold after the first large free, and keep every later
// activation tensor in heaps that never shrink), freed heap tops are
// returned at 1 MB, and at most two arenas serve the threads. Call once,
// early in main.
void TuneAllocatorForSmallFootprint();

}  // namespace fedge

#endif  // FEDGE_COMMON_ENV_PROCESS_MEMORY_H_
