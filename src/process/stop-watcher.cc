#include "process/stop-watcher.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "process/tracee.h"

namespace suture::process {

bool a_status_is_pending() {
  siginfo_t info{};
  return waitid(P_ALL, 0, &info, WEXITED | WSTOPPED | __WALL | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

StopWatcher::StopWatcher(SchedulingBoost& boost, pid_t controller, int priority)
    : boost_(boost), controller_(controller) {
  if (priority <= 0) return;
  thread_ = std::thread([this] { loop(); });
  sched_param param{};
  param.sched_priority = priority;
  // Refused: raise() is refused too, and the loop only waits.
  pthread_setschedparam(thread_.native_handle(), SCHED_FIFO, &param);
}

StopWatcher::~StopWatcher() {
  if (!thread_.joinable()) return;
  stop_ = true;
  boost_.wake_waiters();
  // Pending if it is not asleep yet (it blocks SIGCHLD): its next wait returns.
  pthread_kill(thread_.native_handle(), SIGCHLD);
  thread_.join();
}

void StopWatcher::loop() {
  sigset_t set = sigchld_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // inherited from the controller; to be sure
  while (!stop_) {
    // While the controller is raised it needs no raise: its SIGCHLDs are left
    // pending, for its own sleep to take, and we do not wake for each stop.
    boost_.wait_until_lowered(stop_);
    if (stop_) break;
    if (sigwaitinfo(&set, nullptr) != SIGCHLD || stop_) continue;
    if (!a_status_is_pending()) continue;
    boost_.raise();
    ::syscall(SYS_tgkill, getpid(), controller_, SIGCHLD);
  }
}

}  // namespace suture::process
