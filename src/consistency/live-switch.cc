// Zero-suspend consistency: the entry switch.
//
// The problem. Writing a 5-byte jump over a running function's entry is unsafe
// three ways: only single-byte writes are untorn, so a thread may execute half
// old and half new bytes; a thread paused after the first of the instructions
// the jump covers (a `push` of a three-push prologue) would resume in the middle
// of the jump; and a core that already fetched the old bytes may run them after
// the write unless it serializes (Intel SDM, cross-modifying code). Stop-the-world
// answers all three by holding every thread; here no two threads are ever held
// at once, and most are never held.
//
// The approach (the kernel's text_poke_bp, from outside the process):
//   1. write int3 over the first byte of every entry; serialize every core that
//      runs the process (membarrier PRIVATE_EXPEDITED_SYNC_CORE, a system call
//      run in one thread of the target that was blocked anyway). From now on a
//      thread that reaches an entry traps; we are attached to every thread
//      (without stopping any), so the trap comes to us as a signal stop and we
//      steer the thread where the finished entry will send it: it never sees
//      the signal and never waits for the switch to finish.
//   2. look at every thread once: one blocked in the kernel is unwound from the
//      pc and sp the kernel shows in /proc/PID/task/TID/syscall without a hold
//      (or not at all: one unwound so before step 1 and not on a CPU since);
//      any other is held alone for a few microseconds. A thread stopped at an
//      instruction boundary inside the bytes about to change is single-stepped
//      out of them (the old instructions are intact behind the int3); one with a
//      deeper frame there (a signal frame, a call inside the prologue) is waited
//      for. A deeper frame there has the boundary's address on the stack (the
//      return address, or the pc the signal frame saved): a held thread whose
//      whole stack is copied and holds no such word is let go at once and
//      unwound after the switch, so no unwind keeps the int3s in. A thread
//      that traps at an entry meanwhile is looked at so in that stop, with no
//      hold of its own (look_at_trap()). Frames in the old functions are
//      collected for the report: those calls finish in old code.
//   3. write the tail bytes; serialize. 4. write the first byte; serialize.
//   5. flush: a thread may have executed an int3 and not yet stopped (it was
//      preempted in the kernel's trap path): until no thread has SIGTRAP
//      pending or sits in an uncollected stop, and every runnable thread went
//      once through a stop, keep serving traps. Only then may the controller
//      thread end, which detaches every thread without stopping it.
// A failure before step 4 finishes runs the same protocol back to `before`;
// threads that trap meanwhile are sent back to the entry to retry, so they run
// the old bytes once these are whole again.
//
// Rejected: writing the jump with one aligned 8-byte store (/proc/PID/mem and
// ptrace copy bytes with no atomicity guarantee, and our jumps start wherever
// the function does); emulating the covered instructions out of line (every
// rip-relative form would need relocation; steering to the new code is exact);
// holding each trapping thread until the switch ends (that is a suspension of
// exactly the threads that serve requests).
#include "consistency/live-switch.h"

#include <linux/membarrier.h>
#include <signal.h>
#include <sys/syscall.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "common/interrupt.h"
#include "common/page.h"
#include "consistency/switch-guardian.h"
#include "process/cpu-placement.h"
#include "process/maps.h"
#include "process/proc-files.h"
#include "process/syscall-server.h"
#include "process/tracee.h"
#include "redirect/entry-jump.h"

namespace suture::consistency {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint8_t kInt3 = 0xcc;
constexpr uint64_t kSigtrapBit = 1ULL << (SIGTRAP - 1);
// The stack copied from a held thread before it is let go and unwound (the
// copy is most of such a hold). glibc puts a thread's struct pthread and static
// TLS at the top of its stack, the thread pointer between them, and the frames
// below: so the frames of a thread lie in [sp, thread pointer). Where the
// thread pointer is not that close above sp (the main thread, whose TLS is
// elsewhere; a thread made otherwise) a fixed span is copied. A stack deeper
// than the copy is unwound while held.
constexpr uint64_t kLongestExactCopy = 1024 * 1024;
constexpr size_t kStackCopy = 64 * 1024;
constexpr std::chrono::milliseconds kCoreSyncTimeout{500}, kRegisterTimeout{2000};

size_t stack_copy_size(const user_regs_struct& regs) {
  if (regs.fs_base > regs.rsp && regs.fs_base - regs.rsp <= kLongestExactCopy) return regs.fs_base - regs.rsp;
  return kStackCopy;
}

bool sigtrap_pending(pid_t pid, pid_t tid) {
  auto field = process::status_field(pid, tid, "SigPnd");
  return field && (std::strtoull(field->c_str(), nullptr, 16) & kSigtrapBit) != 0;
}

// Suture's second thread during a switch: runs one job at a time for the
// controller and wakes it (Tracee::poll_waker) when a job is done. Its
// scheduling follows the controller's (run_at): raised with it while the
// int3s are in, else at the priority suture started with, behind the service.
// Left at suture's priority while the int3s were in, it starved behind the
// raised controller serving traps and a real-time memcached, and the longer
// an unwind took the more calls trapped: switches of 1.3 and 3.2 s with 52,512
// and 127,962 calls trapped. The controller sleeps in poll() meanwhile, so on
// the same CPU a trap waits for at most the one job. The priority is always
// set, never inherited: made while the controller is raised
// (SCHED_RESET_ON_FORK) it would fall to SCHED_OTHER.
class UnwindWorker {
 public:
  UnwindWorker(std::function<void()> wake, const process::Scheduling& scheduling)
      : wake_(std::move(wake)), thread_([this] { loop(); }) {
    run_at(scheduling);
  }
  void run_at(const process::Scheduling& scheduling) {
    pthread_setschedparam(thread_.native_handle(), scheduling.policy, &scheduling.param);
  }
  UnwindWorker(const UnwindWorker&) = delete;
  ~UnwindWorker() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    ready_.notify_one();
    thread_.join();
  }
  // One job at a time: the caller waits for it before posting another.
  void post(std::function<void()> job) {
    {
      std::lock_guard lock(mutex_);
      job_ = std::move(job);
    }
    ready_.notify_one();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mutex_);
        ready_.wait(lock, [&] { return stop_ || job_; });
        if (!job_) return;
        job = std::move(job_);
        job_ = nullptr;
      }
      job();
      wake_();  // after the job's result is set: the controller looks when woken
    }
  }

  std::function<void()> wake_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::function<void()> job_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest exists
};

class Switch {
 public:
  Switch(pid_t pid, const std::vector<EntryChange>& changes, const LiveSwitchOptions& options)
      : pid_(pid), changes_(changes), options_(options), tracee_(pid), unwinder_(pid, options.code_tables) {}

  LiveSwitchReport run() {
    check_bytes_are(&EntryChange::before, "changed since we planned");
    refuse_if_sigtrap_is_not_ours_to_take();
    plan_windows();
    guardian_.emplace(pid_, changes_);  // before any int3: see switch-guardian.h
    tracee_.on_trap([this](process::Tracee::Trap& trap) { return on_trap(trap); });
    tracee_.set_helper(options_.helper);
    tracee_.attach_running();
    register_sync_core();
    report_.threads = tracee_.threads().size();

    // From the first int3 until we let go, a thread may trap at any moment and
    // wait for us.
    struct ExpectingTraps {
      process::Tracee& tracee;
      ~ExpectingTraps() { tracee.expect_traps(false); }
    } expecting{tracee_};
    worker_.emplace(tracee_.poll_waker(), tracee_.unraised_scheduling());
    tracee_.expect_traps(true);
    // Last before the int3s: the fewer threads run between this look and the
    // one after them, the fewer are unwound again while every call traps.
    look_before_int3();
    auto started = Clock::now();
    try {
      {
        RaisedWhileTrapping raised(tracee_, *worker_);
        // A look for stops just before: a trap found later happened after it,
        // and its hold is counted from no earlier (earliest_stop() in
        // process/tracee.cc). Without it, a trap taken within microseconds of
        // the first int3 was counted from the last look, milliseconds before
        // (10.8 ms once).
        tracee_.poll(std::chrono::microseconds(0));
        // 1. every entry traps
        for (const auto& c : changes_) write(c.site, {kInt3});
        touched_ = true;
        sync();
        // 2. nobody inside the bytes about to change (a jump being replaced is
        // one instruction: nobody can be inside it)
        if (!boundaries_.empty()) {
          looking_at_traps_ = true;
          examine_all_threads();
          looking_at_traps_ = false;
        }
        // 3. tails, 4. first bytes
        for (const auto& c : changes_) write(c.site + 1, tail(c.after));
        sync();
        for (const auto& c : changes_) write(c.site, {c.after[0]});
        sync();
      }
      report_.length = Clock::now() - started;
      // Traps still in flight are served raised (process/stop-watcher.h).
      flush();
      unwind_deferred();
      if (!options_.wait_clear.empty()) {
        auto waiting = Clock::now();
        wait_until_clear(options_.wait_clear, "still runs");
        report_.waited_clear = Clock::now() - waiting;
      }
    } catch (...) {
      auto error = std::current_exception();
      if (touched_) roll_back();
      std::rethrow_exception(error);
    }
    report_.longest_hold = std::max(report_.longest_hold, tracee_.longest_hold());
    return report_;
  }

 private:
  static std::vector<uint8_t> tail(const std::vector<uint8_t>& bytes) { return {bytes.begin() + 1, bytes.end()}; }

  // From the first int3 to the last byte of a switch (or of its roll-back),
  // every call of a function being switched traps: the controller and the
  // unwinding thread stay raised, working or not, to keep that span short.
  // Before and after it they work at the priority suture started with, and
  // the controller is raised only while a thread waits for it
  // (Tracee::expect_traps).
  class RaisedWhileTrapping {
   public:
    RaisedWhileTrapping(process::Tracee& tracee, UnwindWorker& worker) : tracee_(tracee), worker_(worker) {
      tracee_.keep_raised(true);
      worker_.run_at(tracee_.raised_scheduling());
    }
    RaisedWhileTrapping(const RaisedWhileTrapping&) = delete;
    RaisedWhileTrapping& operator=(const RaisedWhileTrapping&) = delete;
    ~RaisedWhileTrapping() {
      worker_.run_at(tracee_.unraised_scheduling());
      tracee_.keep_raised(false);
    }

   private:
    process::Tracee& tracee_;
    UnwindWorker& worker_;
  };

  void write(RemoteAddr at, const std::vector<uint8_t>& bytes) {
    tracee_.memory().write(at, bytes);
    tracee_.poll(std::chrono::microseconds(0));
  }

  void check_bytes_are(std::vector<uint8_t> EntryChange::*which, const char* what) {
    for (const auto& c : changes_) {
      if ((c.*which).empty() || (c.*which).size() != c.after.size())
        fail("internal: entry change of {} with mismatched sizes", c.function);
      if (tracee_.memory().read(c.site, (c.*which).size()) != c.*which)
        fail("the entry of {} at {} {}; nothing was changed", c.function, c.site, what);
    }
  }

  // A forced SIGTRAP (our int3s, single steps) in a thread that blocks it makes
  // the kernel unblock it in that thread (the tracee puts the mask back) and
  // reset the process's handler to SIG_DFL, and an ignored one is reset to
  // SIG_DFL too: refuse only where that reset would change something.
  void refuse_if_sigtrap_is_not_ours_to_take() {
    auto bit = [&](pid_t tid, const char* field) {
      auto text = process::status_field(pid_, tid, field);
      return text && (std::strtoull(text->c_str(), nullptr, 16) & kSigtrapBit) != 0;
    };
    if (bit(pid_, "SigIgn"))
      fail("process {} ignores SIGTRAP, which zero-suspend mode traps with; use --mode stop-the-world", pid_);
    if (!bit(pid_, "SigCgt")) return;
    for (pid_t tid : process::list_threads(pid_))
      if (tid != options_.helper && bit(tid, "SigBlk"))  // the helper blocks all; it never meets an int3
        fail("process {} handles SIGTRAP and its thread {} blocks it: a trap there would reset the handler; use "
             "--mode stop-the-world",
             pid_, tid);
  }

  // The instruction boundaries strictly inside each change: where a thread can
  // be stopped with the change half done.
  void plan_windows() {
    for (const auto& c : changes_) {
      auto code = tracee_.memory().read(c.site, c.before.size() + 15);
      code.resize(c.before.size() + 15);
      std::copy(c.before.begin(), c.before.end(), code.begin());
      size_t at = 0;
      for (;;) {
        size_t length = redirect::instruction_length(std::span(code).subspan(at));
        if (length == 0) {
          // Undecodable: every byte counts as a boundary.
          for (size_t i = at + 1; i < c.before.size(); ++i) boundaries_.insert(c.site + static_cast<int64_t>(i));
          break;
        }
        at += length;
        if (at >= c.before.size()) break;
        boundaries_.insert(c.site + static_cast<int64_t>(at));
      }
      sites_.emplace(c.site, &c);
    }
  }

  bool inside_window(RemoteAddr pc) const { return boundaries_.contains(pc); }

  bool on_trap(process::Tracee::Trap& trap) {
    if (trap.info.si_signo != SIGTRAP || trap.info.si_code != SI_KERNEL) return false;
    auto it = sites_.find(RemoteAddr(trap.regs.rip - 1));
    if (it == sites_.end()) return false;
    const EntryChange& c = *it->second;
    if (rolling_back_) {
      trap.regs.rip = c.site.value();  // retry: the entry is whole again soon
    } else {
      if (looking_at_traps_ && !seen_at_trap_.contains(trap.tid)) look_at_trap(trap);
      trap.regs.rip = c.steer_to.value();
      ++report_.steered[c.function];
      steered_any_ = true;
    }
    return true;
  }

  // Step 2's look at a thread, taken in the stop of its own trap at an entry
  // (after the first sync: every int3 is in, and the thread serializes its
  // core before it runs user code again, as the sync's registration asks):
  // no hold of ours, where a busy thread otherwise waited tens of
  // microseconds to stop for its look while the traps of the others queued.
  // Its pc is at the entry, outside every window, and leaves for the steered
  // code; it is clear if no word of its whole stack is a boundary (as in
  // look()). Unwound after the switch, for the report, from its caller: the
  // call that trapped runs the new code.
  void look_at_trap(const process::Tracee::Trap& trap) {
    user_regs_struct caller = trap.regs;
    auto stack = whole_stack(trap.tid, trap.regs);
    if (!stack || holds_a_boundary(*stack, trap.regs.rsp)) return;  // looked at as any other
    uint64_t return_address = 0;
    std::memcpy(&return_address, stack->copy.bytes.data() + (trap.regs.rsp - stack->copy.from.value()), 8);
    caller.rip = return_address;
    caller.rsp = trap.regs.rsp + 8;
    deferred_.push_back({trap.tid, caller, std::move(stack->copy)});
    seen_at_trap_.insert(trap.tid);
    ++report_.threads_seen_at_trap;
  }

  // A system call in one thread of the target, held alone for it; then the
  // traps that came meanwhile are served.
  int64_t remote(long number, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0) {
    int64_t result = tracee_.brief_syscall(number, a1, a2, a3);
    tracee_.poll(std::chrono::microseconds(0));
    return result;
  }

  // Registration waits for an RCU grace period (milliseconds): on the helper
  // where it serves system calls, nothing of the target is held meanwhile.
  void register_sync_core() {
    int64_t supported = membarrier(MEMBARRIER_CMD_QUERY, kRegisterTimeout);
    if (supported < 0 || !(supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE))
      fail("the kernel does not offer membarrier(PRIVATE_EXPEDITED_SYNC_CORE), which zero-suspend mode needs to "
           "serialize the target's cores; use --mode stop-the-world");
    int64_t r = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, kRegisterTimeout);
    if (r < 0) fail("membarrier registration in process {} failed: {}", pid_, errno_text(static_cast<int>(-r)));
  }

  // Every core that runs a thread of the target executes a serializing
  // instruction before that thread runs user code again; threads not running
  // now serialize when they are next scheduled (the registration asks for it).
  void sync() {
    int64_t r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, kCoreSyncTimeout);
    if (r < 0) fail("membarrier in process {} failed: {}", pid_, errno_text(static_cast<int>(-r)));
    ++report_.syncs;
  }

  // membarrier(command) in the target: on the helper without a stop where it
  // serves that (tens of microseconds against hundreds), waited for on the
  // unwinding thread while this one serves traps (waking the helper's CPU
  // from idle can take a millisecond here, and a thread that traps meanwhile
  // must not wait for that); through ptrace if it does not answer in
  // `timeout`, and from then on.
  int64_t membarrier(int command, std::chrono::milliseconds timeout) {
    if (options_.syscall_server && !helper_silent_) {
      auto ask = [&] {
        return options_.syscall_server->run(SYS_membarrier, {static_cast<uint64_t>(command), 0, 0, 0, 0, 0}, timeout);
      };
      if (auto answered = worker_ ? serving_traps(ask) : ask()) return *answered;
      helper_silent_ = true;
    }
    return remote(SYS_membarrier, static_cast<uint64_t>(command), 0, 0);
  }

  // Every call of a patched function traps from the first int3 until the
  // switch ends, so what can be done before it is done before it. A thread
  // blocked in the kernel is unwound now, without a hold; if at the look
  // after the int3 it has not been on a CPU since (process::times_scheduled,
  // read through a descriptor kept open: one pread), it has not run a single
  // instruction: blocked still, or woken and waiting for a CPU (on the
  // server's CPU, behind suture itself), its stack is the one unwound here.
  // Threads that ran are looked at again; the unwinder has by then read the
  // tables of the objects (the first unwinds through an object take
  // milliseconds).
  struct EarlierLook {
    uint64_t scheduled = 0;
    process::SchedStatFile schedstat;
    Backtrace trace;

    bool not_scheduled_since() {
      auto now = schedstat.read();
      return now && now->timeslices == scheduled;
    }
  };
  // Twice: the first round reads the unwind tables of every object on the
  // stacks (milliseconds), and busy threads run meanwhile; the second, fast,
  // looks again at those that ran or were running, just before the int3s.
  void look_before_int3() {
    maps_ = process::read_maps(pid_);  // for whole_stack(): stacks stay where they are
    for (int round = 0; round < 2; ++round) {
      for (pid_t tid : tracee_.threads()) {
        check_interrupt();
        if (auto it = earlier_.find(tid); it != earlier_.end()) {
          if (it->second.not_scheduled_since()) continue;
          earlier_.erase(it);
        }
        process::SchedStatFile schedstat(pid_, tid);
        auto before = schedstat.read();
        auto trace = unwind_blocked(unwinder_, pid_, tid);
        auto after = schedstat.read();
        // A count of 0 is a kernel that does not count (sched_info off): no proof.
        if (trace && before && after && after->timeslices != 0 && before->timeslices == after->timeslices)
          earlier_.emplace(tid, EarlierLook{after->timeslices, std::move(schedstat), std::move(*trace)});
      }
    }
  }

  std::optional<Backtrace> unchanged_since_earlier_look(pid_t tid) {
    auto it = earlier_.find(tid);
    if (it == earlier_.end()) return std::nullopt;
    EarlierLook earlier = std::move(it->second);
    earlier_.erase(it);  // good for one look only: the switch goes on
    if (!earlier.not_scheduled_since()) return std::nullopt;
    return std::move(earlier.trace);
  }

  // Runs `unwind` (no ptrace request in it: a blocked thread, a copied stack,
  // or registers already read) on suture's unwinding thread while this one,
  // the only one that may resume a thread it traces, serves the traps of
  // threads that reach an entry meanwhile: an unwind takes up to
  // milliseconds, and each of those threads would wait for it.
  template <typename Unwind>
  std::invoke_result_t<Unwind&> serving_traps(Unwind&& unwind) {
    std::promise<std::invoke_result_t<Unwind&>> promise;
    auto result = promise.get_future();
    // The job refers to this frame: it must be over before we leave, however.
    struct Finished {
      std::future<std::invoke_result_t<Unwind&>>& result;
      ~Finished() {
        if (result.valid()) result.wait();
      }
    } finished{result};
    worker_->post([&] {
      try {
        promise.set_value(unwind());
      } catch (...) {
        promise.set_exception(std::current_exception());
      }
    });
    while (result.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
      tracee_.poll(std::chrono::milliseconds(1));
    return result.get();
  }

  // The whole live stack of a held thread, copied, where its frames are known
  // to lie in it: a thread of glibc's on its own stack (sp and the thread
  // pointer in one mapping; glibc puts TLS and struct pthread at the top, so
  // every frame lies in [sp, thread pointer)), or the main thread on [stack].
  // nullopt otherwise: an alternate signal stack, a stack the program made
  // itself, one deeper than kLongestExactCopy. The copy runs on to the end of
  // the page `top` is in (the unwinder takes whole pages).
  struct WholeStack {
    StackCopy copy;
    uint64_t top;
  };
  std::optional<WholeStack> whole_stack(pid_t tid, const user_regs_struct& regs) const {
    if (regs.rsp % 8 != 0) return std::nullopt;
    auto mapping = std::find_if(maps_.begin(), maps_.end(), [&](const process::Mapping& m) {
      return m.write && regs.rsp >= m.start.value() && regs.rsp < m.end.value();
    });
    if (mapping == maps_.end()) return std::nullopt;
    uint64_t top = 0;
    if (tid == pid_ && mapping->path == "[stack]")
      top = mapping->end.value();
    else if (regs.fs_base > regs.rsp && regs.fs_base < mapping->end.value())
      top = regs.fs_base;
    else
      return std::nullopt;
    if (top - regs.rsp > kLongestExactCopy) return std::nullopt;
    uint64_t from = page_down(regs.rsp);
    StackCopy copy{RemoteAddr(from), std::vector<uint8_t>(page_up(top) - from)};
    if (tracee_.memory().read_partial(copy.from, copy.bytes) != copy.bytes.size()) return std::nullopt;
    return WholeStack{std::move(copy), top};
  }

  // Whether a word of the stack in [sp, top) is the address of a boundary.
  // Every frame that would return into a window has that address on the
  // stack: a return address pushed by a call inside a window, or the pc a
  // signal frame saved. None found, no frame of the thread but the top one can
  // be there.
  bool holds_a_boundary(const WholeStack& stack, uint64_t sp) const {
    if (boundaries_.empty()) return false;
    uint64_t lowest = boundaries_.begin()->value(), highest = boundaries_.rbegin()->value();
    const uint64_t from = stack.copy.from.value();
    for (uint64_t at = sp - from; from + at + 8 <= stack.top; at += 8) {
      uint64_t word;
      std::memcpy(&word, stack.copy.bytes.data() + at, 8);
      if (word >= lowest && word <= highest && boundaries_.contains(RemoteAddr(word))) return true;
    }
    return false;
  }

  // Threads step 2 let go without unwinding them (look()): unwound once the
  // switch is over, for the report's frames in old code.
  struct Deferred {
    pid_t tid;
    user_regs_struct regs;
    StackCopy stack;
  };
  void unwind_deferred() {
    for (const auto& d : deferred_) {
      unwinder_.snapshot_stack(d.stack);
      Backtrace trace = unwinder_.unwind(d.tid, d.regs);
      unwinder_.thaw();  // the copy holds every frame (whole_stack()); a corrupt stack stops early, as ever
      if (auto f = frame_in(trace, options_.old_code))
        report_.old_frames.push_back({d.tid, process::thread_name(pid_, d.tid), *f, std::move(trace)});
    }
    deferred_.clear();
  }

  std::optional<Backtrace> look_at(pid_t tid) { return look(tid, false); }

  // One look at a thread's stack: without a hold if it is blocked in the
  // kernel away from the changing bytes, else held alone (and stepped out of
  // them) just long enough to copy its stack, and unwound once let go; a stack
  // deeper than the copy is unwound while held. nullopt if the thread is gone,
  // or, with `may_defer`, if its whole stack was copied and no word of it is a
  // boundary: it is then unwound after the switch (unwind_deferred()), so no
  // unwind keeps a window open.
  std::optional<Backtrace> look(pid_t tid, bool may_defer) {
    if (may_defer && seen_at_trap_.contains(tid)) return std::nullopt;  // clear, unwound later
    if (auto trace = unchanged_since_earlier_look(tid); trace && !inside_window(trace->pcs.front())) {
      ++report_.threads_seen_running;
      return trace;
    }
    // A thread on a CPU or waiting for one is not blocked: no need to try.
    if (process::thread_state(pid_, tid) != 'R') {
      auto blocked = serving_traps([&] { return unwind_blocked(unwinder_, pid_, tid); });
      if (auto& trace = blocked; trace && !inside_window(trace->pcs.front())) {
        ++report_.threads_seen_running;
        return trace;
      }
    }
    for (bool from_copy : {true, false}) {
      try {
        tracee_.hold(tid);
      } catch (const TargetGone&) {
        if (!process::process_alive(pid_)) throw;
        return std::nullopt;
      }
      ++report_.threads_held;
      if (may_defer && seen_at_trap_.contains(tid)) {  // it trapped on its way to the stop
        tracee_.release(tid);
        return std::nullopt;
      }
      user_regs_struct regs = tracee_.registers(tid);
      for (int steps = 0; inside_window(RemoteAddr(regs.rip)); ++steps) {
        if (steps == 16) {
          tracee_.release(tid);
          fail("thread {} does not leave the entry bytes of a function being switched", tid);
        }
        regs = tracee_.step(tid);
        ++report_.steps;
      }
      if (may_defer && from_copy) {
        if (auto stack = whole_stack(tid, regs); stack && !holds_a_boundary(*stack, regs.rsp)) {
          tracee_.release(tid);
          deferred_.push_back({tid, regs, std::move(stack->copy)});
          tracee_.poll(std::chrono::microseconds(0));
          return std::nullopt;
        }
      }
      Backtrace trace;
      if (from_copy) {
        unwinder_.snapshot_stack(RemoteAddr(regs.rsp), stack_copy_size(regs));
        tracee_.release(tid);
        trace = serving_traps([&] { return unwinder_.unwind(tid, regs); });
        if (!unwinder_.thaw()) continue;  // deeper than the copy
      } else {
        unwinder_.forget_memory();
        trace = serving_traps([&] { return unwinder_.unwind(tid, regs); });
        tracee_.release(tid);
      }
      tracee_.poll(std::chrono::microseconds(0));
      return trace;
    }
    return std::nullopt;  // not reached: the second pass always returns
  }

  // Step 2: no thread may resume inside the bytes that change next.
  void examine_all_threads() {
    auto deadline = Clock::now() + options_.timeout;
    std::vector<pid_t> todo = tracee_.threads();
    for (auto delay = std::chrono::milliseconds(1);; delay = std::min(delay * 2, std::chrono::milliseconds(50))) {
      std::vector<pid_t> again;
      for (pid_t tid : todo) {
        check_interrupt();
        // Each look reads /proc for a while: threads that trapped meanwhile
        // are served between looks, not after all of them.
        tracee_.poll(std::chrono::microseconds(0));
        auto trace = look(tid, true);
        if (!trace) continue;  // gone, or let go clear of every window (unwound later)
        bool deeper_in_window = false;
        for (size_t i = 1; i < trace->pcs.size(); ++i)
          if (inside_window(trace->pcs[i])) deeper_in_window = true;
        if (deeper_in_window) {
          again.push_back(tid);
          continue;
        }
        if (auto f = frame_in(*trace, options_.old_code))
          report_.old_frames.push_back({tid, process::thread_name(pid_, tid), *f, *trace});
      }
      if (again.empty()) return;
      if (Clock::now() + delay > deadline)
        fail("thread {} ({}) would return into the first bytes of a function being switched (a signal handler or "
             "a call inside its prologue is still running); nothing was changed",
             again.front(), process::thread_name(pid_, again.front()));
      serve_traps_for(delay);
      todo = again;
    }
  }

  void serve_traps_for(std::chrono::microseconds span) {
    auto until = Clock::now() + span;
    while (Clock::now() < until) tracee_.poll(std::chrono::duration_cast<std::chrono::microseconds>(until - Clock::now()));
  }

  // Step 5: no trap of ours may be left in flight when we let go.
  void flush() {
    InterruptShield shield;
    std::set<pid_t> cycled;
    auto deadline = Clock::now() + std::max(options_.timeout, std::chrono::milliseconds(1000));
    for (;;) {
      while (tracee_.poll(std::chrono::microseconds(0)) > 0) {
      }
      bool pending = false;
      for (pid_t tid : tracee_.threads()) {
        char state = process::thread_state(pid_, tid);
        if (process::has_ended(state)) continue;
        if (state == 't' || sigtrap_pending(pid_, tid)) {
          pending = true;
        } else if (state == 'R' && !cycled.contains(tid)) {
          // Maybe preempted between an int3 and its signal: one stop shows it.
          cycled.insert(tid);
          try {
            tracee_.hold(tid);
            ++report_.threads_held;
            tracee_.release(tid);
          } catch (const TargetGone&) {
            if (!process::process_alive(pid_)) throw;
          }
          pending = true;
        }
      }
      if (!pending) return;
      if (Clock::now() > deadline) fail("a thread of process {} keeps a trap pending; it was not let go", pid_);
      tracee_.poll(std::chrono::microseconds(100));
    }
  }

  // Until no thread has a frame in `ranges`, or the timeout.
  void wait_until_clear(const std::vector<BusyRange>& ranges, const char* verb) {
    auto deadline = Clock::now() + options_.timeout;
    for (auto delay = std::chrono::milliseconds(1);; delay = std::min(delay * 2, std::chrono::milliseconds(50))) {
      std::optional<std::pair<pid_t, std::string>> busy;
      for (pid_t tid : tracee_.threads()) {
        auto trace = look_at(tid);
        if (!trace) continue;
        if (auto f = frame_in(*trace, ranges)) {
          busy.emplace(tid, *f);
          break;
        }
      }
      if (!busy) return;
      if (Clock::now() + delay > deadline)
        fail("thread {} ({}) {} {} after {} ms", busy->first, process::thread_name(pid_, busy->first), verb,
             busy->second, options_.timeout.count());
      serve_traps_for(delay);
    }
  }

  // The same protocol back to `before`, from whatever state each entry is in.
  void roll_back() noexcept {
    InterruptShield shield;
    try {
      rolling_back_ = true;
      {
        RaisedWhileTrapping raised(tracee_, *worker_);
        for (const auto& c : changes_)
          if (tracee_.memory().read(c.site, 1)[0] != kInt3) write(c.site, {kInt3});
        sync();
        for (const auto& c : changes_) write(c.site + 1, tail(c.before));
        sync();
        for (const auto& c : changes_) write(c.site, {c.before[0]});
        sync();
      }
      flush();
    } catch (const std::exception& e) {
      fmt::print(stderr, "suture: warning: rolling back the entry switch failed: {}; the guardian restores the entries\n",
                 e.what());
      guardian_->repair_now();
      return;
    }
    if (steered_any_ && !options_.steer_code.empty()) {
      try {
        wait_until_clear(options_.steer_code, "still runs");
      } catch (const std::exception& e) {
        steered_remain_ = e.what();
      }
    }
  }

 public:
  std::string steered_remain_;

 private:
  pid_t pid_;
  const std::vector<EntryChange>& changes_;
  const LiveSwitchOptions& options_;
  process::Tracee tracee_;
  Unwinder unwinder_;
  LiveSwitchReport report_;
  std::set<RemoteAddr> boundaries_;
  std::map<RemoteAddr, const EntryChange*> sites_;
  std::map<pid_t, EarlierLook> earlier_;  // look_before_int3()
  std::vector<process::Mapping> maps_;     // look_before_int3(), for whole_stack()
  std::vector<Deferred> deferred_;         // look()
  std::optional<UnwindWorker> worker_;     // serving_traps(); ends before the members above
  std::optional<SwitchGuardian> guardian_;
  bool touched_ = false;
  bool helper_silent_ = false;  // the helper did not answer a call: membarrier()
  bool rolling_back_ = false;
  bool looking_at_traps_ = false;   // during step 2: look_at_trap()
  std::set<pid_t> seen_at_trap_;    // look_at_trap()
  bool steered_any_ = false;
};

}  // namespace

std::optional<Backtrace> unwind_blocked(Unwinder& unwinder, pid_t pid, pid_t tid) {
  auto view = process::blocked_view(pid, tid);
  if (!view) return std::nullopt;
  user_regs_struct regs{};
  regs.rip = view->pc.value();
  regs.rsp = view->sp.value();
  unwinder.forget_memory();
  Backtrace trace = unwinder.unwind(tid, regs);
  auto again = process::blocked_view(pid, tid);
  if (!trace.complete || trace.pcs.empty() || !again || again->text != view->text) return std::nullopt;
  return trace;
}

std::optional<std::string> frame_in(const Backtrace& trace, const std::vector<BusyRange>& ranges) {
  for (size_t i = 0; i < trace.pcs.size(); ++i) {
    RemoteAddr probe = i == 0 ? trace.pcs[i] : trace.pcs[i] - 1;
    for (const auto& r : ranges)
      if (r.range.contains(probe)) return r.function;
  }
  return std::nullopt;
}

LiveSwitchReport switch_entries_live(pid_t pid, const std::vector<EntryChange>& changes,
                                     const LiveSwitchOptions& options) {
  if (changes.empty()) return {};
  LiveSwitchReport report;
  std::exception_ptr error;
  std::string steered_remain;
  // Its own thread: the kernel detaches every thread we attached, without
  // stopping it, when this thread ends. It waits for stops with
  // sigtimedwait(SIGCHLD), and the kernel may hand a process-wide SIGCHLD to
  // any thread that does not block it: this one blocks it meanwhile (the
  // controller inherits the mask).
  std::optional<process::SigchldBlocked> blocked(std::in_place);
  std::thread controller([&] {
    // For the switch only: the thread ends with it (its makers' affinity is
    // left as it was).
    process::settle_on_one_cpu(pid);
    try {
      Switch change(pid, changes, options);
      try {
        report = change.run();
      } catch (...) {
        steered_remain = change.steered_remain_;
        throw;
      }
    } catch (...) {
      error = std::current_exception();
    }
  });
  controller.join();
  blocked.reset();
  if (error) {
    if (!steered_remain.empty()) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        throw SteeredThreadsRemain(fmt::format("{} (rolled back, but {}: its code stays mapped until it leaves)",
                                               e.what(), steered_remain));
      }
    }
    std::rethrow_exception(error);
  }
  return report;
}

}  // namespace suture::consistency
