// Priority inheritance for a stop that comes while suture's controller works.
//
// Mid-switch, any call of a function being switched traps, and its thread
// waits for the controller. Asleep in Tracee::poll(), the controller is raised
// (scheduling-boost.h) and takes the stop at once. While it works (writes
// bytes, reads /proc, waits for an unwind), it runs at the priority suture was
// started with, behind the service. Two earlier versions:
//   - raised for the whole switch: Redis on the same CPU stalled 0.6-1.4 ms
//     behind suture's own work in most switches;
//   - raised only asleep: a trap that came while the controller worked waited
//     for it behind four busy threads on two cores, up to 3 ms
//     (zero-suspend-hot).
// The watcher is a thread at the raised priority that sleeps on SIGCHLD. The
// kernel offers the SIGCHLD of a stop first to the thread it is sent to, the
// tracer, and to another thread only if that one does not wait for it: so the
// watcher wakes only for a stop that came while the controller works. It
// raises the controller, which lowers itself once no thread waits for it
// (Tracee), and wakes it with a SIGCHLD of its own, in case it was about to
// sleep. While the controller is raised the watcher does not listen (its
// SIGCHLDs stay pending for the controller's next sleep): listening, it woke
// at every stop of threads that trap without pause.
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
  // Must be made by a thread that blocks SIGCHLD (Tracee::attach_running()
  // blocks it in the controller). No thread is started at `priority` 0 (we
  // may not raise); if the watcher may not take SCHED_FIFO, it ends at once.
  StopWatcher(SchedulingBoost& boost, pid_t controller, int priority);
  StopWatcher(const StopWatcher&) = delete;
  StopWatcher& operator=(const StopWatcher&) = delete;
  ~StopWatcher();

  // How many stops it found while the controller did not wait for them.
  size_t stops_seen() const { return stops_seen_.load(); }

 private:
  void loop(int priority);

  SchedulingBoost& boost_;
  pid_t controller_;
  std::atomic<pid_t> tid_{0};
  std::atomic<bool> stop_{false};
  std::atomic<size_t> stops_seen_{0};
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace suture::process
