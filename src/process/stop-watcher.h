// Priority inheritance for a stop that comes while suture's controller works.
//
// Mid-switch, a thread of the target may stop at any moment and wait for the
// controller: a call that traps at an entry, a trap still in flight once the
// int3s are gone, a signal the target is sent. Asleep in Tracee::poll(), the
// controller is raised (scheduling-boost.h) and takes the stop at once; while
// the int3s are in it stays raised (Tracee::keep_raised). The rest of its work
// (reading /proc, flushing, looking for old frames) runs at the priority
// suture was started with, behind the service: raised for all of a switch,
// Redis on suture's CPU had 3-43 requests over 500 us in each command.
// A stop that comes while it works there would wait behind the target's own
// threads. The watcher is a thread at the raised priority that sleeps on
// SIGCHLD. The kernel offers the SIGCHLD of a stop first to the thread it is
// sent to, the tracer, and to another thread only if that one does not wait
// for it: so the watcher wakes only for a stop that came while the controller
// works. It raises the controller, which lowers itself once no thread waits
// for it (Tracee), and wakes it with a SIGCHLD of its own, in case it was
// about to sleep. While the controller is raised the watcher does not listen
// (its SIGCHLDs stay pending for the controller's next sleep): listening, it
// woke at every stop of threads that trap without pause.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <thread>

#include "process/scheduling-boost.h"

namespace suture::process {

// A status of a child or tracee of suture that nobody has taken yet (a
// thread in a stop that waits for us, or gone).
bool a_status_is_pending();

class StopWatcher {
 public:
  // Made by the controller, which blocks SIGCHLD (Tracee::attach_running()).
  // No thread is started at `priority` 0 (we may not raise); where it may not
  // take SCHED_FIFO it only waits, and raise() is refused too.
  StopWatcher(SchedulingBoost& boost, pid_t controller, int priority);
  StopWatcher(const StopWatcher&) = delete;
  StopWatcher& operator=(const StopWatcher&) = delete;
  ~StopWatcher();

 private:
  void loop();

  SchedulingBoost& boost_;
  pid_t controller_;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace suture::process
