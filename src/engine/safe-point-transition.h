// Zero-suspend apply with --safe-point FUNC: each thread switches to the new
// code when it next enters FUNC, so every request (a call of FUNC) runs on one
// version from start to end.
//
//   1. transition memory next to the object: two tables of switched thread
//      ids, a counter of old-version calls per function, and the stubs
//      (redirect/transition-stubs.h): a dispatcher per replaced function, the
//      old entries copied out of line, the safe-point hook;
//   2. live switch (no global stop): each replaced function's entry jumps to its
//      dispatcher, FUNC's entry to the hook;
//   3. the transition runs inside the target by itself; suture only watches:
//      a thread that enters FUNC marks itself; a thread blocked in the kernel
//      with neither FUNC nor any replaced function (old or new) on its stack is
//      between requests, and suture marks it (no hold: its stack is read while
//      it stays blocked);
//   4. once every thread is marked, a second live switch points the entries
//      straight at the new code and gives FUNC its entry back; when no thread
//      runs a stub any more, the transition memory goes.
// At --timeout (threads that neither reach FUNC nor block between requests) the
// entries go back to the old code, and the apply is refused naming them.
// Revert runs the same transition the other way: from the patch's code back to
// the original functions, each thread when it next enters FUNC.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "consistency/live-switch.h"
#include "engine/patch-record.h"
#include "engine/target-model.h"
#include "engine/undo-log.h"
#include "process/tracee.h"

namespace suture::engine {

struct ThreadSwitch {
  pid_t tid = 0;
  std::string thread_name;
  bool at_safe_point = false;          // marked itself entering FUNC; else found idle by suture
  std::chrono::nanoseconds after{0};   // since the transition began (as seen by suture's polling)
};

struct TransitionReport {
  std::string safe_point;
  std::vector<ThreadSwitch> switched;
  std::map<std::string, uint64_t> old_calls;  // calls that ran the old version during the transition
  std::chrono::nanoseconds length{0};          // first switch done to second switch done
  consistency::LiveSwitchReport to_dispatchers, to_new_code;
  RemoteRange memory;  // the transition memory, for the caller to unmap once committed
};

struct TransitionInput {
  std::string safe_point;                       // FUNC
  size_t object = 0;                            // where the patched functions live
  std::vector<const RedirectRecord*> redirects;  // planned, not written
  std::vector<consistency::BusyRange> old_code;  // the replaced functions (and their cold parts)
  std::vector<consistency::BusyRange> new_code;  // the patches' code and thunks
  std::string name;                              // for the transition memory's name
  std::chrono::milliseconds timeout{10'000};
  bool reverting = false;  // entries hold the redirects' jumps and go back to the originals
  std::vector<consistency::CodeUnwindTables> code_tables;  // of every patch in the process
};

// Steps 1-4. On success every entry holds its redirect's jump (reverting: its
// original bytes, and no thread runs the patches' code). Throws (after putting
// the entries back) on refusal or timeout; the undo log unmaps what it mapped.
TransitionReport run_safe_point_transition(process::Tracee& tracee, TargetModel& model, UndoLog& undo,
                                           const TransitionInput& input);

// Once the caller has committed: unmaps the transition memory (nothing runs it:
// the second switch waited for that; a failure is only reported) and sums the
// transition up as one live report, the longest hold over both switches and
// `tracee`'s own holds.
consistency::LiveSwitchReport finish_transition(process::Tracee& tracee, const TransitionReport& transition);

}  // namespace suture::engine
