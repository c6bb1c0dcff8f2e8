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
#include <signal.h>
#include <sys/user.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "process/memory.h"
#include "process/scheduling-boost.h"

namespace suture::process {

class SyscallServer;

// {SIGCHLD}: the signal by which the kernel tells a tracer of a stop.
inline sigset_t sigchld_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return set;
}

// SIGCHLD blocked in this thread for the scope, and so in the threads it
// starts meanwhile: for the threads of suture beside a controller that waits
// for stops (Tracee::attach_running()).
class SigchldBlocked {
 public:
  SigchldBlocked() {
    sigset_t child = sigchld_set();
    pthread_sigmask(SIG_BLOCK, &child, &saved_);
  }
  SigchldBlocked(const SigchldBlocked&) = delete;
  SigchldBlocked& operator=(const SigchldBlocked&) = delete;
  ~SigchldBlocked() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

 private:
  sigset_t saved_;
};

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

  // What a thread from hold_one() is for. System calls may run on the helper
  // thread (set_helper); function calls never do: the helper has no TLS of its
  // own (it shares the one of the thread that created it), and libc code reads
  // errno, malloc's caches and locks through it.
  enum class Work { syscalls, calls };
  // Holds one thread to run code with: the helper thread if there is one and
  // the work is system calls, else a thread that is blocked in a system call
  // anyway (it is serving no one) and that the kernel will restart unseen.
  // Returns its tid.
  pid_t hold_one(Work work = Work::syscalls);
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

  // --- staying attached while threads run (zero-suspend mode) ------------------
  //
  // attach_running() attaches to every thread (and, through PTRACE_O_TRACECLONE,
  // to every thread created from then on) without stopping any of them. Attached
  // threads run freely; one that traps or receives a signal stops until poll()
  // deals with it. hold()/release() and hold_one() then interrupt and resume one
  // attached thread at a time, and release resumes instead of detaching.
  //
  // Attachments made this way end only when the controller thread that made
  // them exits: the kernel then detaches every tracee without stopping it, which
  // is the one way to let a running thread go unseen (PTRACE_DETACH needs a
  // stop). So call attach_running() on a thread of its own, drain poll(), and end
  // that thread; the destructor leaves running attached threads alone. That
  // thread blocks SIGCHLD from then on (poll() waits for it), and so should
  // the other threads of suture meanwhile, or the kernel may hand it to them
  // (SigchldBlocked, in the thread that starts the controller).
  void attach_running();
  bool attached_running() const;
  // Holds one attached thread (interrupts it and waits for the stop).
  void hold(pid_t tid);
  // Resumes one held thread (attached mode: stays attached; otherwise detaches).
  void release(pid_t tid);
  // Every thread we are attached to or holding, except the helper thread.
  std::vector<pid_t> threads() const;

  // --- suture's own thread in the target (process/helper-thread.h) ---------------
  //
  // A thread that serves no one: hold_one() takes it first for system calls,
  // and its holds are not counted in longest_hold(). 0 for none. `server`,
  // if the helper serves system calls without a stop (process/syscall-server.h):
  // brief_syscall() then goes there.
  void set_helper(pid_t tid, const SyscallServer* server = nullptr);
  pid_t helper() const;
  const SyscallServer* syscall_server() const;
  // Ends a held thread with exit(2) (that thread alone); for a thread suture
  // created. Returns when the kernel reports it gone.
  void end_thread(pid_t tid);
  // Lets a held thread go on at `code` instead of where it stopped, with every
  // register as it was except rip and rax: `code` must save and restore what
  // it uses and end with `jmp [resume_slot]`. The 8 bytes at resume_slot get
  // the address the thread would have resumed at, and rax its value there, the
  // kernel's system-call restart applied by hand (a thread stopped inside a
  // restartable call makes it again, as it would have). The thread is released
  // at once: what `code` does, it does on its own time, not held.
  void divert(pid_t tid, RemoteAddr code, RemoteAddr resume_slot);

  // A thread of an attached process that stopped with a signal: `regs` may be
  // changed by the handler, which returns true to resume the thread with them
  // and without the signal (the trap was ours), false to deliver the signal.
  struct Trap {
    pid_t tid = 0;
    siginfo_t info{};
    user_regs_struct regs{};
  };
  // Installs the handler every signal stop of an attached thread is offered to
  // first, whether poll() collects it or a hold() finds it.
  void on_trap(std::function<bool(Trap&)> handler);
  // Handles the stops of attached running threads pending now, or waits up to
  // `wait` for one (none with wait = 0): signal stops go to the trap handler,
  // else are delivered; new threads, interrupt stops and group stops are
  // resumed as the kernel would; exits are forgotten. One round, each thread's
  // stop once: threads that trap again and again would otherwise keep the
  // caller here for as long as they do. Returns the number of stops handled;
  // 0 also when woken by poll_waker().
  size_t poll(std::chrono::microseconds wait);
  // Something another thread of suture may call to end a poll() of the
  // controller early, with nothing handled (work it waits for is done).
  std::function<void()> poll_waker() const;
  // For the span in which a thread may trap at any moment (a live switch):
  // the priority suture's controller rises to (process/scheduling-boost.h) is
  // worked out once, from the target's threads now, and the helper
  // (set_helper) is raised just below it: blocked in pause() it costs nothing,
  // and at its own priority it took milliseconds to answer an interrupt
  // behind the target's busy threads, while every call of a function being
  // switched trapped. The controller itself is raised only while a thread
  // waits for it: asleep in poll(), holding a thread, raised by a StopWatcher
  // (process/stop-watcher.h) when a stop comes while it works, or kept so
  // (keep_raised). Its own work runs at the priority suture started with,
  // behind the service.
  // Needs attach_running().
  void expect_traps(bool on);
  // The controller's scheduling when not raised (the priority suture was
  // started with) and raised (as it is now, if it is), for a thread of
  // suture's own that works for it.
  Scheduling unraised_scheduling() const;
  Scheduling raised_scheduling() const;
  // While on, the controller stays raised, working or not: for the span in
  // which every call of a function being switched traps (the int3s of a
  // live switch), which is kept short that way. Not raised for its work
  // there, its writes and syncs waited behind a real-time memcached: switches
  // of 1.8-10.6 ms with 66-414 calls trapped, holds up to 370 us. Where
  // the controller and the target may not share a CPU (their affinities, as
  // expect_traps(true) found them), it also watches for stops without sleeping while on (a wait for one
  // thread's stop, for its first 200 us): woken from a sleep, it took tens
  // of microseconds to see a trap that the next trap waited behind.
  void keep_raised(bool on);
  // Executes one instruction of a held thread; returns its registers after it.
  user_regs_struct step(pid_t tid);

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
  // The same with nothing held beforehand: made by the helper without a stop
  // where it serves system calls (set_helper()), else on one thread held for
  // this call alone and let go right after. With threads held, runs in the
  // held one like syscall().
  int64_t brief_syscall(long number, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0,
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
