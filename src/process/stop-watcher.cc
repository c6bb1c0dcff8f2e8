#include "process/stop-watcher.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace suture::process {

namespace {

sigset_t child_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return set;
}

void signal_thread(pid_t tid) { ::syscall(SYS_tgkill, getpid(), tid, SIGCHLD); }

}  // namespace

bool a_status_is_pending() {
  siginfo_t info{};
  return waitid(P_ALL, 0, &info, WEXITED | WSTOPPED | __WALL | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

StopWatcher::StopWatcher(SchedulingBoost& boost, pid_t controller, int priority)
    : boost_(boost), controller_(controller) {
  if (priority > 0) thread_ = std::thread([this, priority] { loop(priority); });
}

StopWatcher::~StopWatcher() {
  if (!thread_.joinable()) return;
  stop_ = true;
  boost_.wake_waiters();
  // The thread lives until joined, so its id names nobody else. Until it has
  // written it, it has not looked at stop_ yet.
  pid_t tid;
  while ((tid = tid_.load()) == 0) std::this_thread::yield();
  signal_thread(tid);  // pending if it is not asleep yet: its next wait returns
  thread_.join();
}

void StopWatcher::loop(int priority) {
  sigset_t set = child_signal();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  sched_param param{};
  param.sched_priority = priority;
  // Refused: raise() is refused too, and the loop only waits.
  pthread_setschedparam(pthread_self(), SCHED_FIFO, &param);
  tid_ = gettid();
  while (!stop_) {
    // While the controller is raised it needs no raise: its SIGCHLDs are left
    // pending, for its own sleep to take, and we do not wake for each stop.
    boost_.wait_until_lowered(stop_);
    if (stop_) break;
    if (sigwaitinfo(&set, nullptr) != SIGCHLD || stop_) continue;
    if (!a_status_is_pending()) continue;
    boost_.raise();
    ++stops_seen_;
    signal_thread(controller_);
  }
}

}  // namespace suture::process
