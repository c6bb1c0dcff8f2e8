#include "process/scheduling-boost.h"

#include <unistd.h>

#include <algorithm>

#include "process/proc-files.h"

namespace suture::process {

int SchedulingBoost::wanted() const {
  // The target's threads now: one above the highest real-time one. Read at each
  // raise without a plan, since the target may change its own priorities.
  int highest = 0;
  for (pid_t tid : list_threads(target_)) {
    int policy = sched_getscheduler(tid);
    sched_param param{};
    if ((policy == SCHED_FIFO || policy == SCHED_RR) && sched_getparam(tid, &param) == 0)
      highest = std::max(highest, param.sched_priority);
  }
  // Two above: a target thread running a function for us goes one above its
  // fellows (run_priority()), and we stay above it, to take it back at a timeout.
  return std::min(highest + 2, sched_get_priority_max(SCHED_FIFO));
}

SchedulingBoost::SchedulingBoost(pid_t target) : target_(target), thread_(gettid()) {}

void SchedulingBoost::boost_thread(pid_t tid) {
  std::lock_guard lock(mutex_);
  thread_ = tid;
}

bool SchedulingBoost::active() const {
  std::lock_guard lock(mutex_);
  return active_;
}

Scheduling SchedulingBoost::unraised() const {
  std::lock_guard lock(mutex_);
  if (active_) return {saved_policy_ & ~SCHED_RESET_ON_FORK, saved_param_};
  Scheduling now;
  int policy = sched_getscheduler(thread_);
  if (policy >= 0 && sched_getparam(thread_, &now.param) == 0) now.policy = policy & ~SCHED_RESET_ON_FORK;
  return now;
}

Scheduling SchedulingBoost::now() const {
  {
    std::lock_guard lock(mutex_);
    if (active_) {
      Scheduling raised;
      raised.policy = SCHED_FIFO;
      raised.param.sched_priority = priority_;
      return raised;
    }
  }
  return unraised();
}

void SchedulingBoost::plan() {
  int priority = wanted();
  std::lock_guard lock(mutex_);
  planned_ = priority;
}

void SchedulingBoost::forget_plan() {
  std::lock_guard lock(mutex_);
  planned_.reset();
}

int SchedulingBoost::priority() {
  std::unique_lock lock(mutex_);
  if (refused_) return 0;
  if (planned_) return *planned_;
  lock.unlock();
  return wanted();
}

int SchedulingBoost::run_priority() const {
  std::lock_guard lock(mutex_);
  if (refused_) return 0;
  int priority = active_ ? priority_ : planned_.value_or(0);
  return priority > 1 ? priority - 1 : 0;
}

void SchedulingBoost::raise() {
  std::unique_lock lock(mutex_);
  if (active_ || refused_) return;
  int wanted = 0;
  if (planned_) {
    wanted = *planned_;
  } else {
    lock.unlock();  // reads /proc: not under the lock
    wanted = this->wanted();
    lock.lock();
    if (active_ || refused_) return;
  }
  saved_policy_ = sched_getscheduler(thread_);
  if (saved_policy_ < 0 || sched_getparam(thread_, &saved_param_) != 0) {
    refused_ = true;
    return;
  }
  // Already at least that high (started under chrt): nothing to do.
  if ((saved_policy_ == SCHED_FIFO || saved_policy_ == SCHED_RR) && saved_param_.sched_priority >= wanted) {
    priority_ = saved_param_.sched_priority;
    return;
  }
  sched_param param{};
  param.sched_priority = wanted;
  if (sched_setscheduler(thread_, SCHED_FIFO | SCHED_RESET_ON_FORK, &param) != 0) {
    refused_ = true;  // no CAP_SYS_NICE (or an RLIMIT_RTPRIO of 0): run as we are
    return;
  }
  priority_ = wanted;
  active_ = true;
}

void SchedulingBoost::lower() {
  {
    std::lock_guard lock(mutex_);
    if (!active_) return;
    sched_setscheduler(thread_, saved_policy_, &saved_param_);
    active_ = false;
  }
  lowered_.notify_all();
}

void SchedulingBoost::wait_until_lowered(const std::atomic<bool>& give_up) {
  std::unique_lock lock(mutex_);
  lowered_.wait(lock, [&] { return !active_ || give_up.load(); });
}

void SchedulingBoost::wake_waiters() {
  { std::lock_guard lock(mutex_); }  // a waiter is either before its check or asleep
  lowered_.notify_all();
}

ScopedRunBoost::ScopedRunBoost(pid_t tid, int priority) : tid_(tid) {
  if (priority <= 0) return;
  saved_policy_ = sched_getscheduler(tid);
  // SCHED_DEADLINE cannot be told apart and restored through this interface:
  // leave such a thread alone.
  if (saved_policy_ < 0 || sched_getparam(tid, &saved_param_) != 0) return;
  if (saved_policy_ != SCHED_OTHER && saved_policy_ != SCHED_BATCH && saved_policy_ != SCHED_IDLE &&
      saved_policy_ != SCHED_FIFO && saved_policy_ != SCHED_RR)
    return;
  if ((saved_policy_ == SCHED_FIFO || saved_policy_ == SCHED_RR) && saved_param_.sched_priority >= priority) return;
  sched_param param{};
  param.sched_priority = priority;
  changed_ = sched_setscheduler(tid, SCHED_FIFO, &param) == 0;
}

ScopedRunBoost::~ScopedRunBoost() {
  // SCHED_OTHER keeps the thread's nice value across the round trip.
  if (changed_) sched_setscheduler(tid_, saved_policy_, &saved_param_);
}

}  // namespace suture::process
