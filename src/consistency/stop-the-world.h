// Stop-the-world consistency: hold every thread, unwind every one, and go on only
// if none is inside code that is about to change. A thread inside such code is
// let run (all threads are released) until that function returns, then the check
// is retried, within a timeout; then we refuse, naming the thread, the function
// and its backtrace.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "consistency/unwind.h"
#include "process/tracee.h"

namespace suture::consistency {

// Code no thread may be inside (on any frame of its stack) when the change is made.
struct BusyRange {
  RemoteRange range;
  std::string function;  // for messages
};

// A thread found inside a busy range.
struct Conflict {
  pid_t tid = 0;
  std::string thread_name;
  std::string function;
  Backtrace backtrace;
};

struct SafePointResult {
  bool safe = false;
  int attempts = 0;
  std::vector<Conflict> conflicts;  // the last attempt's, when not safe
};

// Address -> "function+0x12 (object)" for messages.
using Symbolizer = std::function<std::string(RemoteAddr)>;

// On success returns with every thread held (tracee.all_held()). On timeout
// returns safe=false with the threads released. Throws Interrupted / TargetGone.
// `code_tables`: code without an object whose frames may be on a stack (patches).
SafePointResult wait_for_safe_point(process::Tracee& tracee, const std::vector<BusyRange>& busy,
                                    std::chrono::milliseconds timeout,
                                    const std::vector<CodeUnwindTables>& code_tables = {});

// "thread 1234 (worker-3) is inside parse_request:\n    #0 parse_request+0x1f (server)\n    #1 ..."
// Frames past #0 are symbolized at their return address minus one (the call).
std::string describe(const Conflict& conflict, const Symbolizer& symbolize);

}  // namespace suture::consistency
