// Holding the threads of a live process, and running code in one of them.
//
// The problem. To patch a process we must stop its threads (all of them to
// check stacks and write jumps, one of them to run mmap), and the process must
// not be able to tell afterwards: no lost or duplicated signals, no stray
// SIGSTOP or SIGTRAP, no system call failing with EINTR that would otherwise have
// been restarted, no register or FPU state changed.
//
// Holding. PTRACE_SEIZE attaches without sending anything, and PTRACE_INTERRUPT
// traps the thread at its next return towards user mode, from inside the kernel's
// signal loop (get_signal), which is where blocking system calls come back with
// -ERESTART*: the kernel decides about restarting only after that trap, from the
// registers it finds then. So as long as a held thread gets its registers back
// exactly, its interrupted read() or nanosleep() restarts as if nothing happened.
// Every trap clears a pending interrupt, so the first stop we collect for a
// thread may also be a signal-delivery-stop (a signal raced with us) or, while
// holding everything, a PTRACE_EVENT_CLONE stop in a thread that was creating a
// thread; the new thread is attached by the kernel (PTRACE_O_TRACECLONE) and
// starts in a stop of its own. hold_all() re-lists /proc/PID/task until a listing
// shows nothing new while every known thread is stopped: then nobody is left who
// could create a thread.
//
// Signals. A thread held in a signal-delivery-stop stays in it, and is detached
// with that signal (and its original siginfo), so it is delivered exactly as the
// kernel would have. While we run code on a held thread its signal mask blocks
// everything the kernel would not force on it, so signals that arrive meanwhile
// stay pending in the kernel and are delivered, once, after release. The rare
// signal we still take from a thread (an unblockable SIGSTOP, one the kernel
// would force, one that raced with our interrupt) is recorded and given back at
// release by injecting it from a signal-delivery-stop; a thread that is in an
// interrupt stop instead is first stepped through a getpid() to land in one.
// Further signals of that thread are queued again with their siginfo. A group
// stop (someone sent SIGSTOP) is left to the kernel: detaching a thread while
// its group is stopped puts it back into the group stop.
//
// The kernel resets the handler of a forced signal that is blocked or ignored.
// Our single-step and int3 traps are forced SIGTRAPs, so SIGTRAP stays unblocked
// while our code runs, and a process that ignores SIGTRAP is refused.
//
// Running code. A system call is made by single-stepping a `syscall` instruction
// that already exists in the target (the vdso has one), with orig_rax = -1 so
// that the kernel's restart logic leaves our call alone; a function is called
// with a return address that points at an existing int3 byte. Nothing of the
// target's code is modified; call() writes only its return address, below the
// red zone of the thread's stack, and puts the old bytes back.
//
// Rejected: PTRACE_ATTACH (sends SIGSTOP, which the target and its parent can
// observe); writing `syscall; int3` over libc (other threads may be executing
// those bytes); stopping threads with tgkill(SIGSTOP) (group-stop semantics and
// a visible signal); PTRACE_SYSCALL to run system calls (when the call returns
// through the syscall-exit stop instead of the signal loop, the restart of the
// thread's own interrupted call would not happen). Waiting uses a polled
// waitpid(tid, __WALL | WNOHANG): a blocking wait could hang forever on a thread
// stuck in uninterruptible sleep, and waitpid(-1) would steal statuses of other
// children of the controller.
#include "process/tracee.h"

#include <elf.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <array>
#include <cerrno>
#include <cstring>
#include <thread>
#include <tuple>

#include "common/error.h"
#include "common/interrupt.h"
#include "process/cpu-placement.h"
#include "process/maps.h"
#include "process/proc-files.h"
#include "process/scheduling-boost.h"
#include "process/stop-watcher.h"
#include "process/syscall-server.h"

namespace suture::process {
namespace {

using Clock = std::chrono::steady_clock;

// A thread that takes this long to reach a stop is stuck in uninterruptible
// sleep (or we have a bug); either way, give up cleanly rather than hang.
constexpr auto kStopTimeout = std::chrono::seconds(10);
// Single-stepping one system call we chose (mmap, mprotect, ...).
constexpr auto kStepTimeout = std::chrono::seconds(10);
// At release, how long to wait for a thread we interrupted to actually stop.
constexpr auto kReleaseTimeout = std::chrono::seconds(5);
// How long a wait for one thread's stop watches for it without sleeping
// (Impl::wait_status): busy memcached workers on another CPU stopped within
// 15-55 us of an interrupt.
constexpr auto kLongestWatchForOne = std::chrono::microseconds(200);

constexpr uint64_t sig_bit(int sig) { return 1ULL << (sig - 1); }

// Signals the kernel forces on a thread (and, if they are blocked or ignored,
// forces by resetting the handler to SIG_DFL). We never block them: doing so
// around a single-step would cost the target its SIGTRAP handler.
constexpr uint64_t kForcedSignals = sig_bit(SIGTRAP) | sig_bit(SIGSYS) | sig_bit(SIGSEGV) | sig_bit(SIGBUS) |
                                    sig_bit(SIGILL) | sig_bit(SIGFPE);
constexpr uint64_t kMaskWhileRunning = ~kForcedSignals;

constexpr size_t kXstateBufferSize = 16384;  // more than any x86 XSAVE area, AMX included

enum class StopKind {
  Gone,       // exited (or no longer ours)
  Event,      // PTRACE_EVENT_STOP: interrupt or group stop, from inside get_signal()
  SyscallEvent,  // PTRACE_EVENT_CLONE/FORK/...: stopped in the middle of a system call
  Signal,     // signal-delivery-stop
};

struct Stop {
  StopKind kind = StopKind::Gone;
  int signal = 0;
  int event = 0;
};

Stop decode(int status) {
  if (!WIFSTOPPED(status)) return {};
  Stop stop;
  stop.signal = WSTOPSIG(status);
  stop.event = status >> 16;
  if (stop.event == PTRACE_EVENT_STOP) stop.kind = StopKind::Event;
  else if (stop.event != 0) stop.kind = StopKind::SyscallEvent;
  else stop.kind = StopKind::Signal;
  return stop;
}

// Yields for the first 200 us (a stop usually takes tens of microseconds, and
// on a busy machine the thread we wait for may need our core), then sleeps in
// short intervals, which cost little CPU.
class Backoff {
 public:
  // `boosted`: we run SCHED_FIFO above the target (scheduling-boost.h), so a
  // yield would never give our core to the thread we wait for: sleep at once,
  // briefly (a real-time sleeper wakes within microseconds).
  explicit Backoff(bool boosted = false) : boosted_(boosted) {}
  void pause() {
    if (boosted_) {
      long micros = std::min(2L << std::min(sleeps_++, 4), 20L);
      timespec ts{0, micros * 1000};
      nanosleep(&ts, nullptr);
    } else if (Clock::now() - started_ < std::chrono::microseconds(200)) {
      sched_yield();
    } else {
      // Capped low: a stop that takes milliseconds (the thread waits for a
      // CPU) should not then wait for our sleep as well.
      long micros = std::min(20L << std::min(sleeps_++, 3), 100L);
      timespec ts{0, micros * 1000};
      nanosleep(&ts, nullptr);
    }
  }
  // True every few milliseconds once the wait is long: time to look in /proc
  // for a thread that is gone without a status for us.
  bool time_to_look() {
    auto now = Clock::now();
    if (now - started_ < std::chrono::milliseconds(5) || now - last_look_ < std::chrono::milliseconds(5)) return false;
    last_look_ = now;
    return true;
  }

 private:
  bool boosted_;
  Clock::time_point started_ = Clock::now();
  Clock::time_point last_look_{};
  int sleeps_ = 0;
};

struct Thread {
  pid_t tid = 0;
  std::string name;
  char state = '?';
  Clock::time_point held_since{};
  Clock::time_point resumed_at{};  // attached mode: when we last let it run
  // ...and the time it had spent running or waiting for a CPU by then (ns), as
  // the scheduler counts it (see Impl::earliest_stop)
  std::optional<uint64_t> runnable_ns_at_resume;
  std::optional<SchedStatFile> schedstat;  // opened at its first stop
  bool stopped = false;       // in a ptrace-stop we have collected
  bool stop_is_signal = false;  // ...a signal-delivery-stop: a signal can be injected on resume
  bool can_run_code = false;  // ...and not in the middle of a system call of its own
  bool foreign = false;       // a child process auto-attached by TRACECLONE: let go at once
  bool group_stop = false;    // ...in a group stop (attached mode resumes it with PTRACE_LISTEN)
  bool blocks_sigtrap = false;  // attached mode: SIGTRAP was in its mask when we attached
  // Signals taken from the thread while we held it, to give back at release.
  std::vector<siginfo_t> deferred;
};

bool is_synchronous_fault(const siginfo_t& info) {
  // Raised by the faulting instruction, which runs again on resume: giving it
  // back as well would deliver it twice.
  switch (info.si_signo) {
    case SIGSEGV:
    case SIGBUS:
    case SIGILL:
    case SIGFPE: return info.si_code > 0;
    default: return false;
  }
}

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
}

}  // namespace

struct Tracee::Impl {
  pid_t pid;
  Memory memory;
  bool target_is_our_child = false;
  std::map<pid_t, Thread> threads;  // seized threads (held once `stopped`)
  bool holding_all = false;
  bool attached_running = false;  // see Tracee::attach_running()
  std::function<bool(Tracee::Trap&)> trap_handler;
  pid_t worker = 0;  // the thread from hold_one()
  bool kept_raised = false;  // Tracee::keep_raised()
  bool cpus_apart = false;   // runs_apart_from(pid), worked out by expect_traps()
  pid_t controller = 0;      // the thread that called attach_running()
  sigset_t child_signal{};   // {SIGCHLD}
  pid_t sigchld_taker = 0;   // the thread that blocked it to wait for it (take_sigchld_here())
  bool sigchld_was_blocked = false;
  // Set by poll_waker(): ends the controller's poll() with nothing handled.
  std::shared_ptr<std::atomic<bool>> woken = std::make_shared<std::atomic<bool>>(false);
  // When we last looked for stops of attached threads and found none.
  Clock::time_point quiet_since{};
  pid_t helper = 0;  // suture's own thread (Tracee::set_helper)
  const SyscallServer* syscall_server = nullptr;  // the helper's, if it serves system calls
  std::optional<ScopedRunBoost> helper_raised;  // while expect_traps
  std::optional<RemoteAddr> syscall_insn;
  std::optional<RemoteAddr> trap_insn;
  std::optional<bool> sigtrap_ignored;
  std::chrono::nanoseconds longest{0};
  SchedulingBoost boost;  // raised while a thread of the target waits for us
  std::optional<StopWatcher> watcher;  // while expect_traps; ends before boost

  Impl(pid_t p, Memory m) : pid(p), memory(std::move(m)), boost(p) {}

  // A thread we held went away (killed, or its process exited).
  [[noreturn]] void throw_gone(pid_t tid) {
    forget(tid);
    if (!process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
    throw TargetGone(fmt::format("process {}: thread {} exited", pid, tid));
  }

  // --- waiting --------------------------------------------------------------

  // The pending wait status of `tid`, if any; 0 ("exited") when it is not our
  // tracee any more. When the target is our own child, the leader's exit is
  // also its parent's news: we look at it without reaping it.
  std::optional<int> try_wait(pid_t tid) {
    if (tid == pid && target_is_our_child) {
      siginfo_t info{};
      for (;;) {
        if (waitid(P_PID, static_cast<id_t>(tid), &info, WEXITED | WSTOPPED | __WALL | WNOHANG | WNOWAIT) == 0) break;
        if (errno != EINTR) return 0;
      }
      if (info.si_pid == 0) return std::nullopt;
      if (info.si_code != CLD_TRAPPED && info.si_code != CLD_STOPPED) return 0;
    }
    for (;;) {
      int status = 0;
      pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
      if (r == tid) return status;
      if (r == 0) return std::nullopt;
      if (errno != EINTR) return 0;  // ECHILD: not (or no longer) our tracee
    }
  }

  // The next wait status of `tid`; a synthetic "exited" status when the thread
  // is gone without one for us (a zombie leader is reported only when its whole
  // group is dead). nullopt at the deadline.
  std::optional<int> wait_status(pid_t tid, Clock::time_point deadline, bool interruptible) {
    Backoff backoff(boost.active());
    auto started = Clock::now();
    for (;;) {
      if (auto status = try_wait(tid)) return status;
      // Attached to running threads: a trap of another thread must not wait
      // for this one (it is held meanwhile).
      if (attached_running && serve_others(tid)) continue;
      if (interruptible) check_interrupt();
      if (backoff.time_to_look()) {
        char state = thread_state(pid, tid);
        if (state == '\0' || state == 'X' || (state == 'Z' && tid == pid)) return 0;
      }
      if (Clock::now() >= deadline) return std::nullopt;
      // Watched for (watch_for_a_stop()) only as long as a thread takes to
      // stop when it needs none of our CPU: one moved onto it since we
      // looked (its affinity changed) gets it back once we sleep.
      sleep_until_a_stop(deadline, Clock::now() - started < kLongestWatchForOne);
    }
  }

  // --- seizing --------------------------------------------------------------

  enum class Seized { attached, gone, ours_already };

  // PTRACE_SEIZE with the retries a live thread needs. `ours_already`: the
  // kernel attached it for us (TRACECLONE) before we heard of its creation; its
  // first stop is on the way.
  Seized seize_thread(pid_t tid, long options) {
    for (int attempt = 0; ptrace(PTRACE_SEIZE, tid, nullptr, reinterpret_cast<void*>(options)) != 0; ++attempt) {
      int err = errno;
      if (err == ESRCH) return Seized::gone;
      char state = thread_state(pid, tid);
      if (has_ended(state)) return Seized::gone;
      auto tracer = status_field(pid, tid, "TracerPid");
      if (tracer && *tracer == std::to_string(gettid())) return Seized::ours_already;
      if (tracer && *tracer != "0")
        fail("process {}: thread {} is already traced by process {} (a debugger?)", pid, tid, *tracer);
      // A thread on its way out refuses attachment before it shows as a
      // zombie; give it a moment to finish.
      if (attempt == 50) fail("process {}: cannot attach to thread {}: {}", pid, tid, errno_text(err));
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return Seized::attached;
  }

  // Attaches to `tid` and asks it to stop. Returns false if it is gone.
  bool seize(pid_t tid, bool trace_clone) {
    char state = thread_state(pid, tid);
    if (has_ended(state)) return false;
    Seized seized = seize_thread(tid, trace_clone ? PTRACE_O_TRACECLONE : 0);
    if (seized == Seized::gone) return false;
    Thread t;
    t.tid = tid;
    t.state = state;
    t.held_since = Clock::now();
    threads.emplace(tid, std::move(t));
    if (seized == Seized::ours_already) return true;
    if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0 && errno != ESRCH)
      fail("process {}: cannot interrupt thread {}: {}", pid, tid, errno_text(errno));
    return true;
  }

  // A thread the kernel attached for us when a traced thread called clone().
  void adopt(pid_t child) {
    if (threads.contains(child)) return;
    Thread t;
    t.tid = child;
    t.held_since = Clock::now();
    t.state = 'R';
    // clone() without CLONE_THREAD makes a process, not one of our threads.
    t.foreign = thread_state(pid, child) == '\0' && access(fmt::format("/proc/{}", child).c_str(), F_OK) == 0;
    // A new thread starts with its creator's mask.
    if (attached_running && !t.foreign) t.blocks_sigtrap = mask_has_sigtrap(child);
    threads.emplace(child, std::move(t));
  }

  // Takes in a status of a thread we are holding or about to hold. Returns false
  // if the thread is gone (and forgotten).
  bool absorb(pid_t tid, int status) {
    auto it = threads.find(tid);
    if (it == threads.end()) return false;
    Thread& t = it->second;
    Stop stop = decode(status);
    if (stop.kind == StopKind::Gone) {
      threads.erase(it);
      if (worker == tid) worker = 0;
      return false;
    }
    t.stopped = true;
    t.stop_is_signal = stop.kind == StopKind::Signal;
    t.can_run_code = stop.kind == StopKind::Event || stop.kind == StopKind::Signal;
    t.group_stop = stop.kind == StopKind::Event && stop.signal != SIGTRAP;
    if (stop.kind == StopKind::SyscallEvent &&
        (stop.event == PTRACE_EVENT_CLONE || stop.event == PTRACE_EVENT_FORK || stop.event == PTRACE_EVENT_VFORK)) {
      unsigned long child = 0;
      if (ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 && child > 0) adopt(static_cast<pid_t>(child));
    }
    if (stop.kind == StopKind::Signal) {
      // Raced with our interrupt: keep the thread in this stop and deliver the
      // signal when we let it go (unless it is a trap of ours).
      siginfo_t info{};
      if (ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info) != 0) {
        info = siginfo_t{};
        info.si_signo = stop.signal;
        info.si_code = SI_USER;
      }
      if (!offer_trap(tid, info)) t.deferred.push_back(info);
    }
    if (t.foreign) {
      release_thread(t);
      threads.erase(tid);
      return false;
    }
    return true;
  }

  // Collects the first stop of every seized thread that has not stopped yet.
  void wait_all_stopped(bool interruptible) {
    auto deadline = Clock::now() + kStopTimeout;
    Backoff backoff(boost.active());
    for (;;) {
      std::vector<pid_t> pending;
      for (auto& [tid, t] : threads)
        if (!t.stopped) pending.push_back(tid);
      if (pending.empty()) return;
      bool progress = false;
      for (pid_t tid : pending) {
        if (auto status = try_wait(tid)) {
          absorb(tid, *status);
          progress = true;
        }
      }
      if (progress) continue;
      if (interruptible) check_interrupt();
      if (backoff.time_to_look()) {
        for (pid_t tid : pending) {
          char state = thread_state(pid, tid);
          if (state == '\0' || state == 'X' || (state == 'Z' && tid == pid)) absorb(tid, 0);
        }
        if (!process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
      }
      if (Clock::now() >= deadline) {
        pid_t tid = pending.front();
        fail("process {}: thread {} ({}) did not stop within {} s (state {})", pid, tid, thread_name(pid, tid),
             std::chrono::duration_cast<std::chrono::seconds>(kStopTimeout).count(), thread_state(pid, tid));
      }
      sleep_until_a_stop(deadline);
    }
  }

  // --- releasing -------------------------------------------------------------

  void requeue(const Thread& t, const siginfo_t& info) const {
    if (is_synchronous_fault(info)) return;
    // The kernel lets another process queue a siginfo only with a negative
    // si_code other than SI_TKILL (sigqueue, timers, ...); kill() and kernel
    // signals are re-sent plainly, which keeps the signal but not its sender.
    if (info.si_code < 0 && info.si_code != SI_TKILL) {
      siginfo_t copy = info;
      if (::syscall(SYS_rt_tgsigqueueinfo, pid, t.tid, info.si_signo, &copy) == 0) return;
    }
    ::syscall(SYS_tgkill, pid, t.tid, info.si_signo);
  }

  void reap_dead(pid_t tid) const {
    // A traced thread that died stays a zombie until its tracer reaps it, and
    // its process cannot be reaped by its parent before then. The leader is
    // the parent's to reap if the parent is us.
    if (tid == pid && target_is_our_child) return;
    int status;
    auto deadline = Clock::now() + std::chrono::milliseconds(200);
    Backoff backoff(boost.active());
    while (Clock::now() < deadline) {
      pid_t r = waitpid(tid, &status, __WALL | WNOHANG);
      if (r == tid && !WIFSTOPPED(status)) return;
      // Alive after all and in a stop: never leave it there.
      if (r == tid) ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
      if (r < 0 && errno != EINTR) return;
      backoff.pause();
    }
  }

  void note_hold_ended(const Thread& t) {
    if (t.held_since == Clock::time_point{} || t.tid == helper) return;  // the helper serves no one
    longest = std::max(longest, std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t.held_since));
  }

  // Lets one thread go. Never throws.
  void release_thread(Thread& t) noexcept {
    try {
      if (!t.stopped && attached_running) return;  // running: nothing to let go of
      if (!t.stopped) {
        auto status = wait_status(t.tid, Clock::now() + kReleaseTimeout, false);
        if (!status) return;  // stuck; detaching needs a stop. Nothing safe is left to do.
        pid_t tid = t.tid;
        // `t` is erased by absorb() when it returns false.
        if (!absorb(tid, *status)) {
          reap_dead(tid);
          return;
        }
      }
      if (!t.deferred.empty() && !t.stop_is_signal && t.can_run_code && sigtrap_ignored == false) {
        // Only a signal-delivery-stop can hand a signal back exactly; one
        // harmless system call ends in one (its single-step trap). Queuing
        // instead would merge two equal standard signals into one.
        pid_t tid = t.tid;
        try {
          run_syscall(tid, SYS_getpid, {});
        } catch (...) {
          if (!threads.contains(tid)) return;
        }
      }
      int inject = 0;
      size_t first_to_requeue = 0;
      if (!t.deferred.empty() && t.stop_is_signal) {
        siginfo_t info = t.deferred.front();
        if (ptrace(PTRACE_SETSIGINFO, t.tid, nullptr, &info) == 0) {
          inject = info.si_signo;
          first_to_requeue = 1;
        }
      }
      for (size_t i = first_to_requeue; i < t.deferred.size(); ++i) requeue(t, t.deferred[i]);
      t.deferred.clear();
      note_hold_ended(t);
      if (attached_running) {
        // Stay attached: resume (a group stop is left to the kernel with LISTEN).
        auto request = t.group_stop && inject == 0 ? PTRACE_LISTEN : PTRACE_CONT;
        auto runnable = runnable_ns(t);
        if (ptrace(request, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(inject))) != 0 && errno == ESRCH)
          forget(t.tid);
        else
          t.stopped = false, t.held_since = {}, t.resumed_at = Clock::now(), t.runnable_ns_at_resume = runnable;
        return;
      }
      if (ptrace(PTRACE_DETACH, t.tid, nullptr, reinterpret_cast<void*>(static_cast<long>(inject))) != 0 &&
          errno == ESRCH)
        reap_dead(t.tid);
      t.stopped = false;
    } catch (...) {
      // Only the allocation in a message could throw here; nothing to undo.
    }
  }

  void release_one(pid_t tid) noexcept {
    auto it = threads.find(tid);
    if (it == threads.end()) return;
    if (attached_running) {
      release_thread(it->second);  // stays attached and in the map (unless gone)
      if (worker == tid) worker = 0;
      lower_boost_if_idle();
      return;
    }
    release_thread(it->second);
    threads.erase(tid);  // by key: release_thread() may have erased it already
    if (worker == tid) worker = 0;
    lower_boost_if_idle();
  }

  // Our priority goes up only while a thread of the target is stopped by us
  // and so waits for us (scheduling-boost.h): not while we unwind a thread
  // that runs on, or read files.
  void lower_boost_if_idle() noexcept {
    if (kept_raised) return;
    for (auto& [tid, t] : threads)
      if (t.stopped) return;
    // Attached to running threads, a stop not taken yet waits for us too; its
    // SIGCHLD may be gone (taken by a sleep that ended for poll_waker()), and
    // the StopWatcher, which wakes for SIGCHLD, would not raise us for it.
    if (boost.active() && !(attached_running && a_status_is_pending())) boost.lower();
  }

  void release_all() noexcept {
    if (attached_running) {
      std::vector<pid_t> held_now;
      for (auto& [tid, t] : threads)
        if (t.stopped) held_now.push_back(tid);
      for (pid_t tid : held_now) release_one(tid);
      holding_all = false;
      worker = 0;
      return;
    }
    // Releasing a thread may reveal one it had just created; loop until empty.
    while (!threads.empty()) release_one(threads.begin()->first);
    holding_all = false;
    worker = 0;
    lower_boost_if_idle();
  }

  // --- holding ---------------------------------------------------------------

  void hold_all() {
    if (attached_running) fail("internal: hold_all() while attached to running threads");
    boost.raise();
    // A worker held alone was seized without TRACECLONE. That it is still in
    // its stop is checked on the way: a thread killed since is not.
    std::vector<pid_t> known;
    for (auto& [tid, t] : threads) known.push_back(tid);
    for (pid_t tid : known) {
      if (ptrace(PTRACE_SETOPTIONS, tid, nullptr, reinterpret_cast<void*>(long{PTRACE_O_TRACECLONE})) == 0) continue;
      threads[tid].stopped = false;  // collect whatever it reports next (most likely its exit)
    }
    wait_all_stopped(true);
    holding_all = true;
    auto deadline = Clock::now() + 3 * kStopTimeout;
    for (;;) {
      check_interrupt();
      if (Clock::now() >= deadline) fail("process {}: its threads could not all be held (threads keep appearing)", pid);
      bool found_new = false;
      for (pid_t tid : list_threads(pid)) {
        if (threads.contains(tid)) continue;
        if (seize(tid, true)) found_new = true;
      }
      wait_all_stopped(true);
      if (threads.empty()) {
        if (!process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // threads are exiting and starting
        continue;
      }
      if (!found_new) break;
    }
  }

  pid_t hold_one(Tracee::Work work) {
    if (worker != 0 && worker == helper && work == Tracee::Work::calls) release_one(worker);
    // The instruction the work will use is found while nothing is held: a
    // first search reads the target's code (about 100 us).
    if (work == Tracee::Work::calls)
      trap_instruction();
    else
      syscall_instruction();
    if (worker != 0) {
      auto it = threads.find(worker);
      if (it != threads.end() && it->second.stopped && it->second.can_run_code) return worker;
      worker = 0;
    }
    if (helper != 0 && work == Tracee::Work::syscalls && !holding_all) {
      boost.raise();
      if (hold_helper()) return worker = helper;
      helper = 0;  // gone: back to the target's own threads
      syscall_server = nullptr;
    }
    if (holding_all) {
      worker = pick_held();
      return worker;
    }
    // A thread blocked in a system call is serving no one, best one the kernel
    // restarts unseen; a stopped one (group stop) costs nothing either; a
    // running one is last. Among equals, the one that has used the least CPU:
    // a background thread rather than the one serving requests (a server's
    // request thread is often blocked in a short read(), and a call we run may
    // take milliseconds: membarrier's first registration waits for an RCU
    // grace period).
    std::vector<std::tuple<int, uint64_t, pid_t>> candidates;
    for (pid_t tid : list_threads(pid)) {
      char state = thread_state(pid, tid);
      int rank;
      switch (state) {
        case 'S': rank = interrupt_is_visible_in(tid) ? 1 : 0; break;
        case 'T': rank = 2; break;
        case 'R': rank = 3; break;
        case 'D': rank = 4; break;
        default: continue;  // zombie, dead, or traced by someone else
      }
      candidates.emplace_back(rank, thread_cpu_ticks(pid, tid), tid);
    }
    std::sort(candidates.begin(), candidates.end());
    // Raised from here on only: the look at every thread above reads /proc
    // three times a thread (a few hundred us for ten), with nothing held.
    boost.raise();
    for (auto [rank, ticks, tid] : candidates) {
      check_interrupt();
      if (tid == helper) continue;
      if (attached_running) {
        if (!threads.contains(tid) || !hold_attached(tid)) continue;
        if (!threads[tid].can_run_code) {
          release_one(tid);
          continue;
        }
        worker = tid;
        return tid;
      }
      if (threads.contains(tid)) continue;
      if (!seize(tid, false)) continue;
      wait_all_stopped(true);
      auto it = threads.find(tid);
      if (it == threads.end()) continue;  // exited meanwhile
      // Held from its stop, as hold_attached() counts: until then it ran.
      it->second.held_since = Clock::now();
      if (!it->second.can_run_code) {
        release_one(tid);
        continue;
      }
      worker = tid;
      return tid;
    }
    if (!process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
    fail("process {}: no thread could be held", pid);
  }

  // The helper held (and able to run a system call); false if it is gone.
  bool hold_helper() {
    if (attached_running) {
      if (!hold_attached(helper)) return false;
    } else if (!threads.contains(helper)) {
      if (!seize(helper, false)) return false;
      wait_all_stopped(true);
      if (!threads.contains(helper)) return false;
    }
    if (threads[helper].can_run_code) return true;
    release_one(helper);
    return false;
  }

  // --- attached mode -------------------------------------------------------------

  // Attaches without stopping; see Tracee::attach_running().
  bool seize_running(pid_t tid) {
    char state = thread_state(pid, tid);
    if (has_ended(state)) return false;
    switch (seize_thread(tid, PTRACE_O_TRACECLONE)) {
      case Seized::gone: return false;
      case Seized::ours_already: adopt(tid); return true;
      case Seized::attached: break;
    }
    Thread t;
    t.tid = tid;
    t.state = state;
    t.blocks_sigtrap = mask_has_sigtrap(tid);
    threads.emplace(tid, std::move(t));
    return true;
  }

  bool mask_has_sigtrap(pid_t tid) const {
    auto blocked = status_field(pid, tid, "SigBlk");
    return blocked && (std::strtoull(blocked->c_str(), nullptr, 16) & sig_bit(SIGTRAP));
  }

  // A trap we caused in a thread that blocks SIGTRAP made the kernel unblock it
  // (a forced signal); put the thread's mask back as it was.
  void reblock_sigtrap(const Thread& t) {
    if (t.blocks_sigtrap) set_sigmask(t.tid, get_sigmask(t.tid) | sig_bit(SIGTRAP));
  }

  void attach_running() {
    if (attached_running) return;
    if (!threads.empty()) fail("internal: attach_running() while threads are held");
    attached_running = true;
    controller = gettid();
    boost.boost_thread(controller);
    quiet_since = Clock::now();  // no stop of ours can be older
    take_sigchld_here();
    // Threads created by attached threads are attached by the kernel; a listing
    // that shows nothing new means nobody unattached is left to create one.
    auto deadline = Clock::now() + kStopTimeout;
    for (;;) {
      bool found_new = false;
      for (pid_t tid : list_threads(pid))
        if (!threads.contains(tid) && seize_running(tid)) found_new = true;
      if (!found_new) break;
      if (Clock::now() >= deadline) fail("process {}: threads keep appearing; cannot attach to all", pid);
    }
    if (threads.empty()) throw TargetGone(fmt::format("process {} exited", pid));
  }

  // Interrupts one attached running thread and waits for its stop. False if it
  // is gone.
  bool hold_attached(pid_t tid) {
    auto it = threads.find(tid);
    if (it == threads.end()) return false;
    if (it->second.stopped) return true;
    boost.raise();
    // Until it stops, it runs at the priority of a thread that works for us:
    // at its own, a busy server thread waits for its CPU behind its siblings
    // before it can stop, and mid-switch every call of theirs traps meanwhile.
    ScopedRunBoost hurry(tid, boost.run_priority());
    if (ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr) != 0) {
      if (errno == ESRCH) {
        forget(tid);
        return false;
      }
      fail("process {}: cannot interrupt thread {}: {}", pid, tid, errno_text(errno));
    }
    auto status = wait_status(tid, Clock::now() + kStopTimeout, true);
    if (!status) fail("process {}: thread {} ({}) did not stop within {} s", pid, tid, thread_name(pid, tid),
                      std::chrono::duration_cast<std::chrono::seconds>(kStopTimeout).count());
    // Held from the moment it stopped (as near as we can tell): until then it ran.
    threads[tid].held_since = Clock::now();
    if (!absorb(tid, *status)) {
      reap_dead(tid);
      return false;
    }
    return true;
  }

  // Handles the pending stops of attached threads other than `busy`; true if
  // there were any.
  bool serve_others(pid_t busy) {
    auto stops = take_pending_stops(busy);
    handle_running_stops(stops);
    return !stops.empty();
  }

  // Gives a signal stop to the trap handler; true if it was ours (the thread
  // then has the handler's registers and must not get the signal).
  bool offer_trap(pid_t tid, const siginfo_t& info) {
    if (!trap_handler) return false;
    Tracee::Trap trap;
    trap.tid = tid;
    trap.info = info;
    trap.regs = get_regs(tid);
    if (!trap_handler(trap)) return false;
    set_regs(tid, trap.regs);
    if (auto it = threads.find(tid); it != threads.end()) reblock_sigtrap(it->second);
    return true;
  }

  user_regs_struct step(pid_t tid) {
    Thread& t = held(tid);
    auto deadline = Clock::now() + kStepTimeout;
    for (;;) {
      auto next = resume_until_stop(t, PTRACE_SINGLESTEP, deadline, "single-step");
      if (!next) fail("process {}: thread {}: a single step did not complete", pid, tid);
      if (next->kind == StopKind::Gone) throw_gone(tid);
      if (next->kind != StopKind::Signal) continue;
      siginfo_t info = get_siginfo(tid, next->signal);
      if (next->signal == SIGTRAP && info.si_code > 0 && info.si_code != SI_KERNEL) {
        reblock_sigtrap(t);
        return get_regs(tid);
      }
      if (offer_trap(tid, info)) return get_regs(tid);
      t.deferred.push_back(info);  // not ours: give it back at release
    }
  }

  size_t poll(std::chrono::microseconds wait) {
    auto deadline = Clock::now() + wait;
    // Waiting for traps: a trapped thread waits for us to wake. Sleeping at a
    // high priority costs the target nothing. We lower ourselves on the way
    // out if this round found no stop: while stops keep coming (threads that
    // call a switched function without pause), we stay raised for the work
    // up to the next round, which otherwise the StopWatcher raised us for
    // again at every stop, costing each a few system calls and wake-ups.
    struct Lower {
      Impl& impl;
      bool on;
      size_t handled = 0;
      ~Lower() {
        if (on && handled == 0) impl.lower_boost_if_idle();
      }
    } lower{*this, attached_running};
    if (wait.count() > 0 && attached_running) boost.raise();
    for (;;) {
      if (wait.count() > 0) drop_stale_wakeups();
      bool no_children = false;
      auto stops = take_pending_stops(0, &no_children);
      if (!stops.empty()) {
        handle_running_stops(stops);
        lower.handled = stops.size();
        return stops.size();
      }
      if (no_children && !process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
      if (Clock::now() >= deadline) return 0;
      if (threads.empty() && !process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
      if (woken->exchange(false)) return 0;  // its SIGCHLD may have gone with the stale ones
      if (!sleep_until_a_stop(deadline)) continue;
      // Woken by a stop (or by poll_waker()): it happened as we woke, less
      // the kernel's wake-up latency, which is not counted.
      quiet_since = Clock::now();
      if (woken->exchange(false)) return 0;
    }
  }

  // Stops are waited for with sigtimedwait(SIGCHLD) (sleep_until_a_stop()):
  // blocked in the thread that waits, the kernel's SIGCHLD for a stop stays
  // pending for it. Polling instead (waitpid, then a sleep of a few
  // microseconds), raised on the CPU of the thread it waits for, suture woke
  // every few microseconds and delayed that thread's way to the stop: a busy
  // memcached worker on suture's CPU took 68-490 us from PTRACE_INTERRUPT to
  // its stop, and 8-45 us (once 162) with this sleep.
  void take_sigchld_here() {
    if (sigchld_taker == gettid()) return;
    child_signal = sigchld_set();
    sigset_t before;
    pthread_sigmask(SIG_BLOCK, &child_signal, &before);
    if (sigchld_taker == 0) sigchld_was_blocked = sigismember(&before, SIGCHLD) == 1;
    sigchld_taker = gettid();
  }

  // Sleeps until a traced thread stops (the kernel tells its tracer with
  // SIGCHLD) or the deadline, whichever comes first. A SIGCHLD taken by
  // another thread of suture is not seen here: each sleep is capped, so that
  // costs at most the cap. True if woken by a SIGCHLD.
  bool sleep_until_a_stop(Clock::time_point deadline, bool may_watch = true) {
    take_sigchld_here();
    constexpr auto kCap = std::chrono::microseconds(500);
    auto span = std::min<Clock::duration>(deadline - Clock::now(), kCap);
    if (span <= Clock::duration::zero()) return false;
    if (kept_raised && cpus_apart && may_watch) return watch_for_a_stop(Clock::now() + span);
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(span).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    return sigtimedwait(&child_signal, nullptr, &ts) == SIGCHLD;
  }

  // sleep_until_a_stop() without sleeping, where no thread of the target may
  // run on a CPU we may run on (cpus_apart: it needs none of ours to run to
  // its stop, process/cpu-placement.h): a stop is seen within a
  // microsecond of the kernel's word, where a sleep took tens of them to end
  // on this machine (the signal's wake-up, the idle CPU's). Yields at every
  // look: the unwinding thread works at our priority meanwhile, on our CPU.
  // True if a stop is pending (its SIGCHLD too: drop_stale_wakeups()).
  bool watch_for_a_stop(Clock::time_point until) {
    do {
      if (a_status_is_pending()) return true;
      sched_yield();
    } while (!woken->load() && Clock::now() < until);
    return false;
  }


  // A SIGCHLD left pending by a stop that was found without sleeping for it
  // would end the next sleep at once: taken before each look.
  void drop_stale_wakeups() {
    timespec none{0, 0};
    while (sigtimedwait(&child_signal, nullptr, &none) == SIGCHLD) {
    }
  }

  // A status of an attached thread that we did not ask for, taken from the
  // kernel, and what we knew when we took it.
  struct PendingStop {
    pid_t tid;
    int status;
    Clock::time_point noticed;
    Clock::time_point quiet_before;  // quiet_since as it was before the look
  };

  // Takes every pending status of attached threads, one per thread (the
  // kernel lists a thread's next status only once we take the one before).
  // Taken one at a time, serving each before looking again, the kernel's list
  // gave the first threads on it every turn: a thread that trapped again
  // within microseconds of its resume was served again and again while one
  // further down the list waited for milliseconds. Stops at `busy`, whose
  // status its waiter takes. `no_children`: waitid found no tracee at all.
  std::vector<PendingStop> take_pending_stops(pid_t busy, bool* no_children = nullptr) {
    std::vector<PendingStop> stops;
    auto quiet_before = quiet_since;
    for (;;) {
      siginfo_t peek{};
      auto looked = Clock::now();
      if (waitid(P_ALL, 0, &peek, WEXITED | WSTOPPED | __WALL | WNOHANG | WNOWAIT) != 0) {
        if (errno == EINTR) continue;
        if (no_children && errno == ECHILD) *no_children = true;
        quiet_since = looked;
        return stops;
      }
      if (peek.si_pid == 0) {
        // Every stop before this look is taken: a later one happened after it.
        quiet_since = looked;
        return stops;
      }
      if (peek.si_pid == busy) return stops;
      pid_t tid = peek.si_pid;
      auto status = try_wait(tid);
      if (!status) return stops;  // taken meanwhile (not by us: leave it)
      stops.push_back({tid, *status, looked, quiet_before});
      // The leader's exit, when it is our child, is left for its parent to
      // take: looking again would find it again.
      if (*status == 0 && tid == pid && target_is_our_child) return stops;
    }
  }

  // Serves the stops in the order they were taken. If one throws, the others
  // are still taken in as held threads (their traps steered), so that letting
  // go resumes them: a taken status is the only word of that stop we get.
  void handle_running_stops(const std::vector<PendingStop>& stops) {
    for (size_t i = 0; i < stops.size(); ++i) {
      try {
        handle_running_stop(stops[i]);
      } catch (...) {
        for (size_t j = i + 1; j < stops.size(); ++j) {
          try {
            if (!threads.contains(stops[j].tid)) adopt(stops[j].tid);
            absorb(stops[j].tid, stops[j].status);
          } catch (...) {
          }
        }
        throw;
      }
    }
  }

  // Time the thread has spent running or waiting for a CPU (ns), as the
  // scheduler counts it; read while it is stopped, it stays put until we let
  // it run. nullopt when the kernel does not tell.
  std::optional<uint64_t> runnable_ns(Thread& t) {
    if (!t.schedstat) t.schedstat.emplace(pid, t.tid);
    auto stat = t.schedstat->read();
    if (!stat) return std::nullopt;
    return stat->on_cpu_ns + stat->waiting_ns;
  }

  // The earliest moment a stop of `t` noticed at `stop.noticed` can have
  // happened: after the last look that found no stop (or as we woke for it),
  // and after we last let the thread run plus the time it has since spent on a
  // CPU or waiting for one (`runnable`: now, in the stop). A thread that stops
  // again and again while other stops keep us from ever finding none would
  // otherwise be counted from its resume, and that counted the milliseconds
  // it then waited for a CPU behind the target's own threads (four busy
  // threads on two cores), which is no hold of ours. Blocked time is not
  // counted by the scheduler, so this stays on the early side: a hold is
  // never counted short.
  Clock::time_point earliest_stop(const Thread& t, const PendingStop& stop, std::optional<uint64_t> runnable) const {
    auto since_resume = t.resumed_at;
    if (runnable && t.runnable_ns_at_resume && *runnable >= *t.runnable_ns_at_resume)
      since_resume += std::chrono::nanoseconds(*runnable - *t.runnable_ns_at_resume);
    return std::min(stop.noticed, std::max(stop.quiet_before, since_resume));
  }

  void handle_running_stop(const PendingStop& pending) {
    pid_t tid = pending.tid;
    if (pending.status == 0 && tid == pid && target_is_our_child)
      throw TargetGone(fmt::format("process {} exited", pid));
    if (!threads.contains(tid)) adopt(tid);  // a new thread, attached by the kernel
    Thread& t = threads[tid];
    Stop stop = decode(pending.status);
    if (stop.kind == StopKind::Gone) {
      threads.erase(tid);
      if (worker == tid) worker = 0;
      return;
    }
    auto runnable = runnable_ns(t);
    if (t.held_since == Clock::time_point{}) t.held_since = earliest_stop(t, pending, runnable);
    t.stopped = true;
    long request = PTRACE_CONT;
    long inject = 0;
    switch (stop.kind) {
      case StopKind::SyscallEvent: {
        unsigned long child = 0;
        if (ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 && child > 0) adopt(static_cast<pid_t>(child));
        break;
      }
      case StopKind::Event:
        if (t.foreign) {
          release_thread(t);  // not one of our threads (a child process): detach
          threads.erase(tid);
          return;
        }
        if (stop.signal != SIGTRAP) request = PTRACE_LISTEN;  // group stop: leave it to the kernel
        break;
      case StopKind::Signal:
        if (!offer_trap(tid, get_siginfo(tid, stop.signal))) inject = stop.signal;
        break;
      case StopKind::Gone: break;
    }
    note_hold_ended(t);
    t.held_since = {};
    if (ptrace(static_cast<__ptrace_request>(request), tid, nullptr, reinterpret_cast<void*>(inject)) != 0 &&
        errno == ESRCH) {
      forget(tid);
      return;
    }
    t.stopped = false;
    t.resumed_at = Clock::now();
    t.runnable_ns_at_resume = runnable;
  }

  // Whether the system call `tid` is blocked in fails with EINTR when the
  // thread is stopped and resumed, even without a signal handler (signal(7):
  // "Interruption of system calls ... by stop signals"); ptrace stops count.
  bool interrupt_is_visible_in(pid_t tid) const {
    auto view = blocked_view(pid, tid);
    if (!view) return false;
    switch (view->number) {
      case SYS_epoll_wait:
      case SYS_epoll_pwait:
      case SYS_epoll_pwait2:
      case SYS_semop:
      case SYS_semtimedop:
      case SYS_rt_sigtimedwait:
      case SYS_io_getevents:
      case SYS_io_pgetevents:
      case SYS_io_uring_enter: return true;
      default: return false;
    }
  }

  // A held thread to run code on: the worker, else one that was blocked in a
  // system call when we held it.
  pid_t pick_held() {
    if (worker != 0 && threads.contains(worker) && threads[worker].stopped && threads[worker].can_run_code)
      return worker;
    pid_t best = 0;
    for (auto& [tid, t] : threads) {
      if (!t.stopped || !t.can_run_code) continue;
      if (best == 0 || (t.state == 'S' && threads[best].state != 'S')) best = tid;
    }
    if (best == 0) {
      if (threads.empty() && !process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
      fail("process {}: no held thread can run code (hold one first)", pid);
    }
    return best;
  }

  Thread& held(pid_t tid) {
    auto it = threads.find(tid);
    if (it == threads.end() || !it->second.stopped) fail("process {}: thread {} is not held", pid, tid);
    return it->second;
  }

  // --- registers -------------------------------------------------------------

  user_regs_struct get_regs(pid_t tid) {
    user_regs_struct regs{};
    if (ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) {
      if (errno == ESRCH) throw_gone(tid);
      fail("process {}: thread {}: cannot read registers: {}", pid, tid, errno_text(errno));
    }
    return regs;
  }

  void set_regs(pid_t tid, const user_regs_struct& regs) {
    if (ptrace(PTRACE_SETREGS, tid, nullptr, &regs) != 0) {
      if (errno == ESRCH) throw_gone(tid);
      fail("process {}: thread {}: cannot write registers: {}", pid, tid, errno_text(errno));
    }
  }

  uint64_t get_sigmask(pid_t tid) {
    uint64_t mask = 0;
    if (ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) != 0) {
      if (errno == ESRCH) throw_gone(tid);
      fail("process {}: thread {}: cannot read the signal mask: {}", pid, tid, errno_text(errno));
    }
    return mask;
  }

  void set_sigmask(pid_t tid, uint64_t mask) {
    if (ptrace(PTRACE_SETSIGMASK, tid, sizeof mask, &mask) != 0) {
      if (errno == ESRCH) throw_gone(tid);
      fail("process {}: thread {}: cannot set the signal mask: {}", pid, tid, errno_text(errno));
    }
  }

  // --- code already in the target --------------------------------------------

  // The first occurrence of `pattern` in an executable mapping, the vdso first
  // (never patched, always present), then libc, then anything else.
  std::optional<RemoteAddr> find_code_bytes(std::span<const uint8_t> pattern) const {
    std::vector<Mapping> maps = read_maps(pid);
    auto rank = [](const Mapping& m) {
      if (m.path == "[vdso]") return 0;
      if (m.path.find("/libc.so") != std::string::npos) return 1;
      return 2;
    };
    std::vector<const Mapping*> order;
    for (const Mapping& m : maps)
      if (m.exec && m.read && m.path != "[vsyscall]") order.push_back(&m);
    std::stable_sort(order.begin(), order.end(), [&](auto* a, auto* b) { return rank(*a) < rank(*b); });
    constexpr size_t kChunk = 64 * 1024;
    std::vector<uint8_t> buffer(kChunk);
    for (const Mapping* m : order) {
      for (RemoteAddr at = m->start; at < m->end; at += static_cast<int64_t>(kChunk - pattern.size() + 1)) {
        size_t want = std::min<uint64_t>(kChunk, static_cast<uint64_t>(m->end - at));
        size_t got = memory.read_partial(at, std::span(buffer.data(), want));
        auto hit = std::search(buffer.begin(), buffer.begin() + static_cast<long>(got), pattern.begin(), pattern.end());
        if (hit != buffer.begin() + static_cast<long>(got)) return at + (hit - buffer.begin());
        if (got < want) break;
      }
    }
    return std::nullopt;
  }

  // A cached address is checked before each use: the bytes could have been
  // patched since (by us or by the target's own JIT).
  RemoteAddr code_bytes(std::optional<RemoteAddr>& cache, std::span<const uint8_t> pattern, const char* what) {
    if (cache) {
      std::array<uint8_t, 4> now{};
      std::span<uint8_t> view(now.data(), pattern.size());
      if (memory.read_partial(*cache, view) == pattern.size() && std::equal(view.begin(), view.end(), pattern.begin()))
        return *cache;
      cache.reset();
    }
    cache = find_code_bytes(pattern);
    if (!cache && !process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
    if (!cache) fail("process {}: no {} instruction found in its executable mappings", pid, what);
    return *cache;
  }

  void refuse_if_sigtrap_ignored() {
    // The kernel resets an ignored SIGTRAP to SIG_DFL when it forces one (our
    // single-step and int3 do): that would change the target for good.
    if (!sigtrap_ignored) {
      auto text = status_field(pid, pid, "SigIgn");
      uint64_t ignored = text ? std::strtoull(text->c_str(), nullptr, 16) : 0;
      sigtrap_ignored = (ignored & sig_bit(SIGTRAP)) != 0;
    }
    if (*sigtrap_ignored)
      fail("process {} ignores SIGTRAP; running code in it would reset that disposition, so we refuse", pid);
  }

  siginfo_t get_siginfo(pid_t tid, int signal) const {
    siginfo_t info{};
    if (ptrace(PTRACE_GETSIGINFO, tid, nullptr, &info) != 0) {
      info = siginfo_t{};
      info.si_signo = signal;
      info.si_code = SI_USER;
    }
    return info;
  }

  // --- system calls -------------------------------------------------------------

  int64_t syscall(long number, const std::array<uint64_t, 6>& args) {
    refuse_if_sigtrap_ignored();
    return run_syscall(pick_held(), number, args);
  }

  RemoteAddr syscall_instruction() {
    static constexpr std::array<uint8_t, 2> kSyscall = {0x0f, 0x05};  // syscall
    return code_bytes(syscall_insn, kSyscall, "syscall");
  }

  RemoteAddr trap_instruction() {
    static constexpr std::array<uint8_t, 1> kInt3 = {0xcc};  // int3
    return code_bytes(trap_insn, kInt3, "int3");
  }

  int64_t run_syscall(pid_t tid, long number, const std::array<uint64_t, 6>& args) {
    Thread& t = held(tid);
    const user_regs_struct saved = get_regs(tid);
    const uint64_t saved_mask = get_sigmask(tid);
    RemoteAddr insn = syscall_instruction();
    // One system call instruction, bounded: it may block, never spin.
    ScopedRunBoost running(tid, boost.run_priority());
    user_regs_struct regs = saved;
    regs.rax = static_cast<uint64_t>(number);
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    regs.rip = insn.value();
    regs.orig_rax = static_cast<uint64_t>(-1);  // not inside a system call: no restart logic
    regs.eflags &= ~0x100ULL;                   // TF belongs to the kernel while stepping
    set_sigmask(tid, kMaskWhileRunning);
    bool restored = false;
    auto restore = [&] {
      if (restored) return;
      restored = true;
      set_regs(tid, saved);
      set_sigmask(tid, saved_mask);
    };
    try {
      set_regs(tid, regs);
      auto deadline = Clock::now() + kStepTimeout;
      for (;;) {
        auto next = resume_until_stop(t, PTRACE_SINGLESTEP, deadline, "single-step");
        if (!next) {
          restore();
          fail("process {}: thread {}: system call {} did not complete within {} s", pid, tid, number,
               std::chrono::duration_cast<std::chrono::seconds>(kStepTimeout).count());
        }
        Stop stop = *next;
        if (stop.kind == StopKind::Gone) {
          restored = true;
          throw_gone(tid);
        }
        if (stop.kind != StopKind::Signal) continue;  // a leftover trap; the step has not run yet
        siginfo_t info = get_siginfo(tid, stop.signal);
        if (stop.signal == SIGTRAP && info.si_code > 0) {
          // A trap the kernel raised can only be our step's; anywhere but
          // right after the instruction it would be a kernel quirk we do not
          // know, and giving it to the target would show it a SIGTRAP.
          user_regs_struct after = get_regs(tid);
          if (after.rip != insn.value() + 2) {
            restore();
            fail("process {}: thread {}: single-step of system call {} stopped at {:#x}, not after {}", pid, tid,
                 number, after.rip, insn);
          }
          restore();
          return static_cast<int64_t>(after.rax);
        }
        if (stop.signal == SIGSYS && info.si_code == 1 /* SYS_SECCOMP */) {
          restore();
          fail("process {}: system call {} was refused by the target's seccomp filter", pid, number);
        }
        t.deferred.push_back(info);  // not ours: give it back at release, step again
      }
    } catch (...) {
      try {
        restore();
      } catch (...) {
      }
      throw;
    }
  }

  // Resumes a held thread with `request` (PTRACE_SINGLESTEP or PTRACE_CONT) and
  // collects its next stop. Past the deadline the thread is interrupted again,
  // still held, and nullopt is returned.
  std::optional<Stop> resume_until_stop(Thread& t, int request, Clock::time_point deadline, const char* what) {
    if (ptrace(static_cast<__ptrace_request>(request), t.tid, nullptr, nullptr) != 0) {
      if (errno == ESRCH) throw_gone(t.tid);
      fail("process {}: thread {}: cannot {}: {}", pid, t.tid, what, errno_text(errno));
    }
    t.stopped = false;
    auto status = wait_status(t.tid, deadline, false);
    if (!status) {
      stop_running(t);
      return std::nullopt;
    }
    Stop stop = decode(*status);
    if (stop.kind != StopKind::Gone) {
      t.stopped = true;
      t.stop_is_signal = stop.kind == StopKind::Signal;
    }
    return stop;
  }

  // A thread we resumed and that has not come back: interrupt it and collect
  // the stop, recording any signal it stops with.
  void stop_running(Thread& t) {
    ptrace(PTRACE_INTERRUPT, t.tid, nullptr, nullptr);
    for (;;) {
      auto status = wait_status(t.tid, Clock::now() + kStopTimeout, false);
      if (!status) fail("process {}: thread {} does not stop", pid, t.tid);
      Stop stop = decode(*status);
      if (stop.kind == StopKind::Gone) throw_gone(t.tid);
      t.stopped = true;
      t.stop_is_signal = stop.kind == StopKind::Signal;
      if (stop.kind == StopKind::Signal) {
        // Our own trap (the call returned just as time ran out) is ours to drop.
        siginfo_t info = get_siginfo(t.tid, stop.signal);
        if (!(stop.signal == SIGTRAP && info.si_code > 0)) t.deferred.push_back(info);
      }
      return;
    }
  }

  // exit(2) in a held thread: that thread alone ends. Never the leader, whose
  // exit would leave the process a zombie-led group.
  void end_thread(pid_t tid) {
    if (tid == pid) fail("internal: end_thread() of the main thread of process {}", pid);
    Thread& t = held(tid);
    user_regs_struct regs = get_regs(tid);
    regs.rax = SYS_exit;
    regs.rdi = 0;
    regs.rip = syscall_instruction().value();
    regs.orig_rax = static_cast<uint64_t>(-1);
    regs.eflags &= ~0x100ULL;
    set_regs(tid, regs);
    t.deferred.clear();  // signals for a thread that ends are nobody's
    auto deadline = Clock::now() + kStepTimeout;
    for (;;) {
      auto next = resume_until_stop(t, PTRACE_CONT, deadline, "end the thread");
      if (!next) fail("process {}: thread {} did not end within {} s", pid, tid,
                      std::chrono::duration_cast<std::chrono::seconds>(kStepTimeout).count());
      if (next->kind == StopKind::Gone) {
        forget(tid);
        if (helper == tid) {
          helper = 0;
          syscall_server = nullptr;
        }
        return;
      }
      // Anything else (a signal stop) is for a thread that is about to end.
    }
  }

  void divert(pid_t tid, RemoteAddr code, RemoteAddr resume_slot) {
    Thread& t = held(tid);
    if (!t.can_run_code || !t.deferred.empty())
      fail("internal: thread {} of process {} cannot be diverted from this stop", tid, pid);
    user_regs_struct regs = get_regs(tid);
    uint64_t resume = regs.rip;
    if (static_cast<int64_t>(regs.orig_rax) >= 0) {
      // What arch_do_signal_or_restart() does after a stop without a handler.
      constexpr int64_t kRestartSys = 512, kRestartNoIntr = 513, kRestartNoHand = 514, kRestartBlock = 516;
      switch (-static_cast<int64_t>(regs.rax)) {
        case kRestartSys:
        case kRestartNoIntr:
        case kRestartNoHand:
          regs.rax = regs.orig_rax;
          resume -= 2;
          break;
        case kRestartBlock:
          regs.rax = SYS_restart_syscall;
          resume -= 2;
          break;
        default: break;
      }
    }
    memory.write(resume_slot, std::span(reinterpret_cast<const uint8_t*>(&resume), sizeof resume));
    regs.rip = code.value();
    regs.orig_rax = static_cast<uint64_t>(-1);  // the restart is done above; the kernel must not redo it
    set_regs(tid, regs);
    release_one(tid);
  }

  void forget(pid_t tid) {
    if (threads.erase(tid) == 0) return;
    if (worker == tid) worker = 0;
    reap_dead(tid);
  }

  // --- function calls ------------------------------------------------------------

  uint64_t call(RemoteAddr function, const std::vector<uint64_t>& args, std::chrono::milliseconds timeout) {
    if (args.size() > 6) fail("process {}: call of {}: {} arguments, at most 6 are supported", pid, function, args.size());
    refuse_if_sigtrap_ignored();
    pid_t tid = pick_held();
    if (tid == helper) fail("internal: a function call on suture's helper thread (it has no TLS of its own)");
    Thread& t = held(tid);
    const user_regs_struct saved = get_regs(tid);
    const uint64_t saved_mask = get_sigmask(tid);
    // Raised, but below us: a function may spin (a lock, a bug), and we must
    // stay able to interrupt it at the timeout.
    ScopedRunBoost running(tid, boost.run_priority());
    RemoteAddr trap = trap_instruction();
    std::vector<uint8_t> saved_fpu(kXstateBufferSize);
    iovec fpu_iov{saved_fpu.data(), saved_fpu.size()};
    if (ptrace(PTRACE_GETREGSET, tid, reinterpret_cast<void*>(long{NT_X86_XSTATE}), &fpu_iov) != 0)
      fail("process {}: thread {}: cannot read FPU state: {}", pid, tid, errno_text(errno));

    // Below the red zone, aligned as at a call instruction: rsp + 8 is a
    // multiple of 16 at the function's first instruction.
    RemoteAddr sp = (RemoteAddr(saved.rsp) - 256).align_down(16) - 8;
    const std::vector<uint8_t> saved_stack = memory.read(sp, 8);
    uint64_t return_address = trap.value();
    std::array<uint8_t, 8> bytes{};
    std::memcpy(bytes.data(), &return_address, 8);

    user_regs_struct regs = saved;
    unsigned long long* arg_regs[6] = {&regs.rdi, &regs.rsi, &regs.rdx, &regs.rcx, &regs.r8, &regs.r9};
    for (size_t i = 0; i < args.size(); ++i) *arg_regs[i] = args[i];
    regs.rax = 0;  // no vector arguments, for variadic callees
    regs.rip = function.value();
    regs.rsp = sp.value();
    regs.orig_rax = static_cast<uint64_t>(-1);
    regs.eflags &= ~0x500ULL;  // TF and DF clear, as the ABI requires at a call

    bool restored = false;
    auto restore = [&] {
      if (restored) return;
      restored = true;
      set_regs(tid, saved);
      ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(long{NT_X86_XSTATE}), &fpu_iov);
      set_sigmask(tid, saved_mask);
      memory.write(sp, saved_stack);
    };
    try {
      memory.write(sp, bytes);
      set_sigmask(tid, kMaskWhileRunning);
      set_regs(tid, regs);
      auto deadline = Clock::now() + timeout;
      for (;;) {
        auto next = resume_until_stop(t, PTRACE_CONT, deadline, "resume");
        if (!next) {
          restore();
          fail("process {}: call of {} did not return within {} ms", pid, function, timeout.count());
        }
        Stop stop = *next;
        if (stop.kind == StopKind::Gone) {
          restored = true;
          throw_gone(tid);
        }
        if (stop.kind == StopKind::SyscallEvent) {
          unsigned long child = 0;
          if (ptrace(PTRACE_GETEVENTMSG, tid, nullptr, &child) == 0 && child > 0) adopt(static_cast<pid_t>(child));
          continue;
        }
        if (stop.kind != StopKind::Signal) continue;
        siginfo_t info = get_siginfo(tid, stop.signal);
        user_regs_struct now = get_regs(tid);
        if (stop.signal == SIGTRAP && now.rip == trap.value() + 1) {
          restore();
          return now.rax;
        }
        if ((kForcedSignals & sig_bit(stop.signal)) && info.si_code > 0) {
          // The function crashed (or hit a breakpoint of its own): the fault is
          // ours, not the target's; drop it with the registers.
          restore();
          fail("process {}: call of {} raised {} at {:#x}", pid, function, signal_name(stop.signal), now.rip);
        }
        t.deferred.push_back(info);
      }
    } catch (...) {
      try {
        restore();
      } catch (...) {
      }
      throw;
    }
  }
};

Tracee::Tracee(pid_t pid) {
  if (pid <= 0 || access(fmt::format("/proc/{}/stat", pid).c_str(), F_OK) != 0)
    throw TargetGone(fmt::format("process {} does not exist", pid));
  if (pid == getpid()) fail("process {} is suture itself", pid);
  if (!process_alive(pid)) throw TargetGone(fmt::format("process {} has exited (zombie)", pid));
  auto tracer = status_field(pid, pid, "TracerPid");
  if (tracer && *tracer != "0" && *tracer != std::to_string(gettid()))
    fail("process {} is already traced by process {} (a debugger?)", pid, *tracer);
  std::optional<Memory> memory;
  try {
    memory.emplace(pid);
  } catch (const TargetGone&) {
    throw;
  } catch (const Error&) {
    auto scope = read_proc_file("/proc/sys/kernel/yama/ptrace_scope");
    std::string hint = scope ? fmt::format(" (kernel.yama.ptrace_scope={})", scope->substr(0, scope->find('\n'))) : "";
    fail("process {}: not permitted to trace{}; run as root or give suture CAP_SYS_PTRACE", pid, hint);
  }
  impl_ = std::make_unique<Impl>(pid, std::move(*memory));
  auto stat = read_proc_file(fmt::format("/proc/{}/stat", pid));
  if (stat) {
    // "pid (comm) S ppid ...": the fields after the last ')'.
    size_t close_paren = stat->rfind(')');
    if (close_paren != std::string::npos)
      impl_->target_is_our_child = std::atoi(stat->c_str() + close_paren + 4) == getpid();
  }
}

Tracee::~Tracee() {
  if (!impl_) return;
  impl_->release_all();
  if (impl_->sigchld_taker == gettid() && !impl_->sigchld_was_blocked)
    pthread_sigmask(SIG_UNBLOCK, &impl_->child_signal, nullptr);
}

pid_t Tracee::pid() const { return impl_->pid; }

const Memory& Tracee::memory() const { return impl_->memory; }

pid_t Tracee::hold_one(Work work) {
  try {
    return impl_->hold_one(work);
  } catch (...) {
    // Let go of anything this attempt seized but did not hand out.
    if (!impl_->holding_all) {
      std::vector<pid_t> seized;
      for (auto& [tid, t] : impl_->threads)
        if (tid != impl_->worker) seized.push_back(tid);
      for (pid_t tid : seized) impl_->release_one(tid);
    }
    throw;
  }
}

void Tracee::hold_all() {
  try {
    impl_->hold_all();
  } catch (...) {
    impl_->release_all();
    throw;
  }
}

void Tracee::release_all() { impl_->release_all(); }

bool Tracee::all_held() const {
  if (!impl_->holding_all || impl_->threads.empty()) return false;
  return std::all_of(impl_->threads.begin(), impl_->threads.end(), [](auto& entry) { return entry.second.stopped; });
}

std::vector<ThreadInfo> Tracee::held_threads() const {
  std::vector<ThreadInfo> held;
  for (auto& [tid, t] : impl_->threads) {
    if (!t.stopped) continue;
    // Names are read here rather than while seizing, which is on the critical path.
    if (t.name.empty()) t.name = thread_name(impl_->pid, tid);
    held.push_back({tid, t.name, t.state, t.held_since});
  }
  return held;
}

void Tracee::attach_running() { impl_->attach_running(); }

bool Tracee::attached_running() const { return impl_->attached_running; }

void Tracee::hold(pid_t tid) {
  if (!impl_->attached_running) fail("internal: Tracee::hold() needs attach_running()");
  if (!impl_->hold_attached(tid)) throw TargetGone(fmt::format("process {}: thread {} exited", impl_->pid, tid));
}

void Tracee::release(pid_t tid) { impl_->release_one(tid); }

std::vector<pid_t> Tracee::threads() const {
  std::vector<pid_t> all;
  for (auto& [tid, t] : impl_->threads)
    if (tid != impl_->helper) all.push_back(tid);
  return all;
}

void Tracee::set_helper(pid_t tid, const SyscallServer* server) {
  impl_->helper = tid;
  impl_->syscall_server = tid != 0 ? server : nullptr;
}

pid_t Tracee::helper() const { return impl_->helper; }

const SyscallServer* Tracee::syscall_server() const { return impl_->syscall_server; }

void Tracee::end_thread(pid_t tid) { impl_->end_thread(tid); }

void Tracee::divert(pid_t tid, RemoteAddr code, RemoteAddr resume_slot) { impl_->divert(tid, code, resume_slot); }

void Tracee::on_trap(std::function<bool(Trap&)> handler) { impl_->trap_handler = std::move(handler); }

size_t Tracee::poll(std::chrono::microseconds wait) { return impl_->poll(wait); }

std::function<void()> Tracee::poll_waker() const {
  pid_t process = getpid(), thread = impl_->controller;
  if (thread == 0) fail("internal: Tracee::poll_waker() needs attach_running()");
  return [process, thread, woken = impl_->woken] {
    woken->store(true);
    ::syscall(SYS_tgkill, process, thread, SIGCHLD);
  };
}

Scheduling Tracee::unraised_scheduling() const { return impl_->boost.unraised(); }

Scheduling Tracee::raised_scheduling() const { return impl_->boost.now(); }

void Tracee::keep_raised(bool on) {
  impl_->kept_raised = on;
  if (on)
    impl_->boost.raise();
  else
    impl_->lower_boost_if_idle();
}

void Tracee::expect_traps(bool on) {
  if (on) {
    if (!impl_->attached_running) fail("internal: Tracee::expect_traps() needs attach_running()");
    impl_->boost.plan();
    // Here, before the switch's last look at the threads, not as the int3s
    // go in: it reads every thread's affinity.
    impl_->cpus_apart = runs_apart_from(impl_->pid);
    if (impl_->helper != 0 && !impl_->helper_raised)
      impl_->helper_raised.emplace(impl_->helper, impl_->boost.run_priority());
    if (!impl_->watcher) impl_->watcher.emplace(impl_->boost, impl_->controller, impl_->boost.priority());
  } else {
    impl_->watcher.reset();
    impl_->helper_raised.reset();
    impl_->boost.forget_plan();
    impl_->cpus_apart = false;
  }
}

user_regs_struct Tracee::step(pid_t tid) { return impl_->step(tid); }

user_regs_struct Tracee::registers(pid_t tid) const {
  impl_->held(tid);
  return impl_->get_regs(tid);
}

std::chrono::nanoseconds Tracee::longest_hold() const {
  return std::exchange(impl_->longest, std::chrono::nanoseconds{0});
}

int64_t Tracee::syscall(long number, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6) {
  return impl_->syscall(number, {a1, a2, a3, a4, a5, a6});
}

int64_t Tracee::brief_syscall(long number, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5,
                              uint64_t a6) {
  if (!held_threads().empty()) return syscall(number, a1, a2, a3, a4, a5, a6);
  if (impl_->syscall_server) {
    const pid_t pid = impl_->pid, helper = impl_->helper;
    auto helper_gone = [&] { return has_ended(thread_state(pid, helper)); };
    auto result = impl_->syscall_server->run(number, {a1, a2, a3, a4, a5, a6}, kStepTimeout,
                                             [&] { return !helper_gone(); });
    if (result) return *result;
    // Not through ptrace instead: the call may still come, and twice could harm.
    // Only suture ends the helper, or the whole process's end: its threads go
    // one by one, the helper may be gone before the leader shows it.
    if (helper_gone()) {
      for (auto until = Clock::now() + std::chrono::milliseconds(200); Clock::now() < until && process_alive(pid);)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (!process_alive(pid)) throw TargetGone(fmt::format("process {} exited", pid));
    if (helper_gone())
      fail("process {}: the helper thread {} ended before making system call {}", pid, helper, number);
    fail("process {}: the helper thread did not make system call {} within {} s", pid, number,
         std::chrono::duration_cast<std::chrono::seconds>(kStepTimeout).count());
  }
  hold_one();
  int64_t result;
  try {
    result = syscall(number, a1, a2, a3, a4, a5, a6);
  } catch (...) {
    release_all();
    throw;
  }
  release_all();
  return result;
}

uint64_t Tracee::call(RemoteAddr function, std::vector<uint64_t> args, std::chrono::milliseconds timeout) {
  return impl_->call(function, args, timeout);
}

}  // namespace suture::process
