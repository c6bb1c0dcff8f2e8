// Unwinding the threads of a stopped process with DWARF call-frame information
// (libunwind with accessors of our own: memory read through /proc/PID/mem with a
// page cache, unwind tables found from the target's memory), so code built
// without frame pointers unwinds reliably. Not thread-safe: one Unwinder per
// thread of the controller.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

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

// Bytes of a thread's stack read while it was held, for unwinding it after it
// was let go (Unwinder::snapshot_stack).
struct StackCopy {
  RemoteAddr from;
  std::vector<uint8_t> bytes;
};

// Code that no loaded object describes (a patch's code or its thunks, in a
// mapping of suture's own), and the .eh_frame lists in the target that do
// (consistency/eh-frame-index.h). Without them a backtrace could not be
// followed past a frame of patch code, and would miss what lies beneath it: a
// revert must see the frames of its patch under those of another.
struct CodeUnwindTables {
  RemoteRange code;
  std::vector<RemoteAddr> eh_frames;
};

class Unwinder {
 public:
  explicit Unwinder(pid_t pid, std::vector<CodeUnwindTables> code_tables = {});
  ~Unwinder();
  Unwinder(const Unwinder&) = delete;
  // The thread must be held (ptrace-stopped) by this process; its registers are
  // read with PTRACE_GETREGS, so this must run on the thread that holds it.
  Backtrace unwind(pid_t tid, size_t max_frames = 256);
  // The same, from registers the caller already has (Tracee::registers), so the
  // unwinder itself makes no ptrace request and may run on any thread.
  Backtrace unwind(pid_t tid, const user_regs_struct& registers, size_t max_frames = 256);
  // Forget cached memory (call after the target ran). Also forgets the unwind
  // tables found and libunwind's cached frame rules, since objects may have been
  // loaded or unloaded meanwhile.
  void invalidate();
  // Forget cached memory only (stacks change as threads run), keeping the
  // unwind tables and frame rules: for unwinding running threads one at a time
  // while no object is loaded or unloaded.
  void forget_memory();
  // Copies `bytes` of a held thread's stack from `sp` up (one read of
  // /proc/PID/mem), so the thread can be let go before it is unwound: until
  // thaw(), unwinding reads the copy, and of the rest only what cannot change
  // (file-backed, read-only mappings: code, unwind tables). thaw() says whether
  // the unwinds since stayed within that (false: a frame lay beyond the copy,
  // the backtrace stopped there and must be taken again from a held thread).
  void snapshot_stack(RemoteAddr sp, size_t bytes);
  // The same from a copy made earlier: whole pages from a page boundary.
  void snapshot_stack(const StackCopy& copy);
  bool thaw();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace suture::consistency
