// Zero-suspend consistency: changing function entries while every thread runs.
//
// No thread is ever held together with another. The entries change by the
// protocol of the kernel's text_poke_bp, done from outside the process: an int3
// first, every core serialized (membarrier SYNC_CORE, run in the target), the
// tail bytes, serialized again, the first byte, serialized again. A thread that
// reaches an entry meanwhile traps into us and is steered where the finished
// entry will send it, so it never runs a torn jump and sees no signal. Threads
// stopped between the first and the last instruction the new bytes cover are
// moved out of them before the tail changes. A thread already inside an old
// function finishes that call in old code; its next call takes the new entry.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/remote-addr.h"
#include "consistency/stop-the-world.h"
#include "consistency/unwind.h"

namespace suture::process {
class SyscallServer;
}

namespace suture::consistency {

// One function entry to change.
struct EntryChange {
  std::string function;          // for messages and counts
  RemoteAddr site;               // the first byte that changes
  std::vector<uint8_t> before;   // what must be there now
  std::vector<uint8_t> after;    // what goes there (same length)
  RemoteAddr steer_to;           // where a thread that reaches `site` mid-change continues
};

struct LiveSwitchOptions {
  // Code whose frames are reported when a thread still runs it after the switch
  // (the functions being replaced).
  std::vector<BusyRange> old_code;
  // After the switch, wait until no thread runs here (revert: the code that is
  // about to be unmapped); at the timeout the switch is rolled back.
  std::vector<BusyRange> wait_clear;
  // The code threads are steered into (the new functions, their thunks): if the
  // switch fails after steering some, it waits for them to leave before
  // returning the error.
  std::vector<BusyRange> steer_code;
  std::chrono::milliseconds timeout{10'000};
  // Suture's helper thread in the target (process/helper-thread.h), 0 for none:
  // it runs the system calls of the switch and is never examined.
  pid_t helper = 0;
  // The helper's core syncs without a stop (process/syscall-server.h), if it
  // serves them; else each sync runs on a held thread.
  const process::SyscallServer* syscall_server = nullptr;
  // Code without an object whose frames may be on a stack (patches).
  std::vector<CodeUnwindTables> code_tables;
};

// A thread that still has a frame in old code after the switch (it finishes
// that call in old code; an event loop may never return).
struct OldFrame {
  pid_t tid = 0;
  std::string thread_name;
  std::string function;
  Backtrace backtrace;
};

struct LiveSwitchReport {
  std::chrono::nanoseconds longest_hold{0};   // the longest any one thread was held (or kept in a trap)
  size_t threads = 0;                         // threads of the process at the switch
  size_t threads_held = 0;                    // threads briefly held to look at them
  size_t threads_seen_running = 0;            // threads looked at without a hold (blocked in the kernel)
  size_t threads_seen_at_trap = 0;            // threads looked at in the stop of their own trap at an entry
  size_t steps = 0;                           // instructions single-stepped to move threads out of new bytes
  std::map<std::string, uint64_t> steered;    // calls that reached an entry mid-change, by function
  std::vector<OldFrame> old_frames;
  std::chrono::nanoseconds length{0};          // first int3 written to last byte serialized
  std::chrono::nanoseconds waited_clear{0};    // waiting for wait_clear
  int syncs = 0;                               // core serializations run in the target
  pid_t helper = 0;                            // suture's thread that ran the system calls, if any
  std::string no_helper;                       // ...else why there was none
};

// The stack of a thread blocked in the kernel, unwound from process::blocked_view()
// without a hold; nullopt if it runs, if the unwind is incomplete, or if the
// thread moved while we read it.
std::optional<Backtrace> unwind_blocked(Unwinder& unwinder, pid_t pid, pid_t tid);

// The range a frame of `trace` lies in: frame #0 by its pc, the others by their
// call (return address - 1). nullopt when none.
std::optional<std::string> frame_in(const Backtrace& trace, const std::vector<BusyRange>& ranges);

// Runs the change on a controller thread of its own (attachments end with that
// thread, without a stop) and waits for it. All or nothing: on any failure the
// entries hold `before` again, and threads steered into `steer_code` before the
// failure have left it (else SteeredThreadsRemain). Throws Error (a refusal with
// its reason), SteeredThreadsRemain, TargetGone or Interrupted.
LiveSwitchReport switch_entries_live(pid_t pid, const std::vector<EntryChange>& changes,
                                     const LiveSwitchOptions& options);

// Thrown when a failed switch may have left threads running in the steering
// destinations (so the caller must not unmap them).
class SteeredThreadsRemain : public Error {
 public:
  using Error::Error;
};

}  // namespace suture::consistency
