// Suture's controller thread above the target while one of the target's
// threads waits for it.
//
// A hold lasts as long as suture takes to let go, and suture competes for the
// CPU with the very process it holds a thread of: on a loaded two-core machine
// a hold of a few system calls' worth of work measured milliseconds, spent
// waiting for a timeslice. While a thread of the target is stopped by us (held,
// or stepped through a system call), and while the controller sleeps waiting
// for stops that may come at any moment (Tracee::poll: a trap mid-switch), and
// while the int3s of a live switch are in (Tracee::keep_raised), it runs
// SCHED_FIFO two priorities above the highest of the target's threads (2 if
// none is real-time), so it runs the moment it can: priority inheritance, by
// hand. Otherwise (reading ELF files, linking, unwinding a thread that runs
// on, looking for old frames) it runs as it was started, never ahead of the
// service. A first version stayed raised from the first int3 of a live switch
// to its end, busy or not: Redis on the same CPU then stalled 0.6-1.4 ms in
// most switches, behind suture's own work. Without CAP_SYS_NICE nothing
// changes and active() stays false.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>

namespace suture::process {

// A thread's scheduling policy (without SCHED_RESET_ON_FORK) and parameters.
struct Scheduling {
  int policy = SCHED_OTHER;
  sched_param param{};
};

class SchedulingBoost {
 public:
  // Boosts the thread that makes it (the one that traces) until
  // boost_thread() names another.
  explicit SchedulingBoost(pid_t target);
  SchedulingBoost(const SchedulingBoost&) = delete;
  SchedulingBoost& operator=(const SchedulingBoost&) = delete;
  ~SchedulingBoost() { lower(); }

  void boost_thread(pid_t tid);
  // Idempotent. Any thread of suture may call raise() (a StopWatcher raises
  // the controller while it works and a stop comes); lower() is for the
  // boosted thread.
  void raise();
  void lower();
  bool active() const;
  // Returns once not raised, or when `give_up` is true (checked whenever
  // wake_waiters() is called).
  void wait_until_lowered(const std::atomic<bool>& give_up);
  void wake_waiters();
  // The boosted thread's scheduling when not raised: what suture was started
  // with, for a thread of suture's own that works at that priority.
  Scheduling unraised() const;
  // Its scheduling now: raised while active.
  Scheduling now() const;
  // Works out the priority to raise to from the target's threads now and keeps
  // it until forget_plan(): raise() otherwise reads every thread's scheduling
  // (two system calls a thread), and a live switch raises and lowers around
  // every wait for a stop.
  void plan();
  void forget_plan();
  // The priority raise() goes to: planned, else worked out now; 0 when we may
  // not raise at all.
  int priority();
  // For a target thread that runs code for us (a system call, a function)
  // while we wait: above the target's other threads, below us (a function may
  // spin; at our own priority it could keep us from ever taking it back, as a
  // first version did in a test). While raised, or planned (we rise the
  // moment it stops). 0: leave it as it is.
  int run_priority() const;

 private:
  int wanted() const;

  pid_t target_;
  pid_t thread_;
  mutable std::mutex mutex_;
  std::condition_variable lowered_;
  bool active_ = false;
  bool refused_ = false;            // EPERM once: never try again
  int priority_ = 0;                // while active
  std::optional<int> planned_;      // plan()
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
