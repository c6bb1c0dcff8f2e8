#include "process/scheduling-boost.h"

#include <algorithm>

#include "process/proc-files.h"

namespace suture::process {

void SchedulingBoost::raise() {
  if (active_ || refused_) return;
  // The target's threads now: one above the highest real-time one. Read at each
  // raise, since the target may change its own priorities.
  int highest = 0;
  for (pid_t tid : list_threads(target_)) {
    int policy = sched_getscheduler(tid);
    sched_param param{};
    if ((policy == SCHED_FIFO || policy == SCHED_RR) && sched_getparam(tid, &param) == 0)
      highest = std::max(highest, param.sched_priority);
  }
  // Two above: a target thread running a function for us goes one above its
  // fellows (run_priority()), and we stay above it, to take it back at a timeout.
  int wanted = std::min(highest + 2, sched_get_priority_max(SCHED_FIFO));
  saved_policy_ = sched_getscheduler(0);
  if (saved_policy_ < 0 || sched_getparam(0, &saved_param_) != 0) {
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
  if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &param) != 0) {
    refused_ = true;  // no CAP_SYS_NICE (or an RLIMIT_RTPRIO of 0): run as we are
    return;
  }
  priority_ = wanted;
  active_ = true;
}

void SchedulingBoost::lower() {
  if (!active_) return;
  sched_setscheduler(0, saved_policy_, &saved_param_);
  active_ = false;
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
