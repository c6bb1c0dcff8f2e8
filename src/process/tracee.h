// One traced process: holding and releasing its threads, and running system calls
// and small functions inside it without touching its libc.
//
// Attaching uses PTRACE_SEIZE + PTRACE_INTERRUPT, so the target never sees a
// SIGSTOP; PTRACE_O_TRACECLONE catches threads created while we attach. A signal
// that arrives while a thread is held is recorded and re-delivered when the
// thread is released. A thread interrupted inside a blocking or restartable
// system call gets its registers back exactly, so the kernel restarts the call as
// it would have. The destructor releases everything on every path.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "process/memory.h"

namespace suture::process {

struct ThreadInfo {
  pid_t tid = 0;
  std::string name;   // /proc/PID/task/TID/comm
  char state = '?';   // /proc/.../stat state letter at the time it was held
  std::chrono::steady_clock::time_point held_since{};
};

class Tracee {
 public:
  // Checks that the process exists and may be traced; attaches to nothing yet.
  // Throws TargetGone ("process 123 does not exist") or Error ("process 123:
  // not permitted to trace (ptrace_scope=1?); run as root or ...").
  explicit Tracee(pid_t pid);
  Tracee(const Tracee&) = delete;
  ~Tracee();  // releases every held thread and detaches

  pid_t pid() const;
  const Memory& memory() const;

  // Holds one thread to run system calls with, preferring a thread that is
  // blocked in a system call anyway (it is serving no one) and that the kernel
  // will restart unseen. Returns its tid.
  pid_t hold_one();
  // Holds every thread of the process, including threads created while doing
  // so; returns when all are in ptrace-stop. Threads that exit meanwhile are
  // forgotten. Note: like SIGSTOP/SIGCONT (signal(7)), a hold makes a thread
  // blocked in epoll_wait(), semop(), sigtimedwait() or io_getevents() return
  // EINTR; event loops retry those.
  void hold_all();
  // Resumes every held thread (re-delivering recorded signals) and detaches.
  void release_all();
  bool all_held() const;
  std::vector<ThreadInfo> held_threads() const;

  // Registers of a held thread.
  user_regs_struct registers(pid_t tid) const;
  // Holds of threads that ended since the last call: the longest time any
  // thread was held (the "pause" reported to users).
  std::chrono::nanoseconds longest_hold() const;

  // Runs a system call in a held thread (the one from hold_one() by default) by
  // single-stepping an existing `syscall` instruction of the target; restores the
  // thread's registers afterwards. Returns the raw result (-errno on failure).
  int64_t syscall(long number, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
                  uint64_t a5 = 0, uint64_t a6 = 0);
  // Calls a function of the target with up to six integer arguments on a held
  // thread, returning rax. Used for IFUNC resolvers, which take no locks and
  // allocate nothing. Fails after `timeout`.
  uint64_t call(RemoteAddr function, std::vector<uint64_t> args,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(1000));

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace suture::process
