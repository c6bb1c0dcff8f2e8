// Suture's controller thread above the target while it holds one of the
// target's threads.
//
// A hold lasts as long as suture takes to let go, and suture competes for the
// CPU with the very process it holds a thread of: on a loaded two-core machine
// a hold of a few system calls' worth of work measured milliseconds, spent
// waiting for a timeslice. While a thread of the target is stopped by us (held,
// or stepped through a system call), and from the first int3 of a live switch
// until it lets go (Tracee::stay_raised), the controller thread runs
// SCHED_FIFO two priorities above the highest of the target's threads (2 if
// none is real-time), so it runs the moment it can: priority inheritance, by
// hand. Otherwise (reading ELF files, linking) it runs as it was started,
// never ahead of the service. While raised it sleeps until a thread stops
// (sigtimedwait on SIGCHLD): a first version that stayed raised for a whole
// live switch polled every 10 us and delayed a server's own threads by
// milliseconds. Without CAP_SYS_NICE nothing changes and active() stays false.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <optional>

namespace suture::process {

class SchedulingBoost {
 public:
  explicit SchedulingBoost(pid_t target) : target_(target) {}
  SchedulingBoost(const SchedulingBoost&) = delete;
  SchedulingBoost& operator=(const SchedulingBoost&) = delete;
  ~SchedulingBoost() { lower(); }

  // Idempotent; must be called from the thread to boost (the one that traces).
  void raise();
  void lower();
  bool active() const { return active_; }
  // The SCHED_FIFO priority used when active, 0 before the first raise() or
  // when not permitted.
  int priority() const { return priority_; }
  // For a target thread that runs code for us (a system call, a function)
  // while we wait: above the target's other threads, below us (a function may
  // spin; at our own priority it could keep us from ever taking it back, as a
  // first version did in a test). 0: leave it as it is.
  int run_priority() const { return active_ && priority_ > 1 ? priority_ - 1 : 0; }

 private:
  pid_t target_;
  bool active_ = false;
  bool refused_ = false;  // EPERM once: never try again
  int priority_ = 0;
  int saved_policy_ = SCHED_OTHER;
  sched_param saved_param_{};
};

// One held thread of the target raised to the controller's priority for as
// long as it runs code for us (a system call, a function): it needs the CPU as
// much as we do, and at its own priority it would wait behind the very threads
// it shares the machine with. Its own scheduling comes back at the end of the
// scope. `priority` 0: nothing changes.
class ScopedRunBoost {
 public:
  ScopedRunBoost(pid_t tid, int priority);
  ScopedRunBoost(const ScopedRunBoost&) = delete;
  ScopedRunBoost& operator=(const ScopedRunBoost&) = delete;
  ~ScopedRunBoost();

 private:
  pid_t tid_;
  bool changed_ = false;
  int saved_policy_ = SCHED_OTHER;
  sched_param saved_param_{};
};

}  // namespace suture::process
