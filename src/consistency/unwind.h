// Unwinding the threads of a stopped process with DWARF call-frame information
// (libunwind-ptrace, memory read through /proc/PID/mem with a page cache), so
// code built without frame pointers unwinds reliably.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/remote-addr.h"

namespace suture::consistency {

struct Backtrace {
  pid_t tid = 0;
  // pcs[0] is the thread's pc; the others are return addresses (call sites + 1 byte past).
  std::vector<RemoteAddr> pcs;
  bool complete = true;  // false if the unwind stopped early
  std::string problem;   // why it stopped early
};

class Unwinder {
 public:
  explicit Unwinder(pid_t pid);
  ~Unwinder();
  Unwinder(const Unwinder&) = delete;
  // The thread must be held (ptrace-stopped) by this process.
  Backtrace unwind(pid_t tid, size_t max_frames = 256);
  // Forget cached memory (call after the target ran).
  void invalidate();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace suture::consistency
