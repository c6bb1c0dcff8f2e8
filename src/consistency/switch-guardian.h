// A guard against suture dying in the middle of a live switch.
//
// While an entry holds an int3, a thread that reaches it survives only because
// suture is attached and steers it. If suture is killed (SIGKILL, OOM), the
// kernel detaches every thread and the next call of that function would get a
// SIGTRAP nobody handles: the target would die of our patch. So before the first
// int3 is written, a guardian process is started (a grandchild, so that it is
// never one of our children to wait for) that holds /proc/PID/mem open and
// waits on a pipe. If suture ends the switch, it tells the guardian, which
// exits. If suture dies, the pipe reports end-of-file and the guardian makes
// every entry whole again: an entry whose tail already holds the new bytes gets
// the new first byte, any other gets its old bytes back. Threads that had
// trapped before suture died are beyond help; every later call is safe.
#pragma once

#include <sys/types.h>

#include <vector>

#include "consistency/live-switch.h"

namespace suture::consistency {

class SwitchGuardian {
 public:
  // Starts the guardian for these changes. Throws Error if it cannot.
  SwitchGuardian(pid_t pid, const std::vector<EntryChange>& changes);
  SwitchGuardian(const SwitchGuardian&) = delete;
  SwitchGuardian& operator=(const SwitchGuardian&) = delete;
  // Tells the guardian the switch ended (whichever way): it exits untouched.
  ~SwitchGuardian();
  // We could not finish or undo the switch ourselves: the guardian makes the
  // entries whole now, as if we had died.
  void repair_now();

 private:
  int pipe_write_ = -1;
};

}  // namespace suture::consistency
