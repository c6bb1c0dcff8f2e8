// Stop-the-world consistency.
//
// The problem. A change to code is safe only if no thread is, or will return,
// inside the old bytes: a thread paused in the middle of a prologue that we
// overwrite resumes inside our jump; a thread whose caller's frame belongs to a
// replaced function returns into code that may no longer match the data it
// expects. So at the moment of the change no stack may hold a pc in a busy range.
//
// The approach (libcare's, made explicit). Hold every thread, unwind every one
// (unwind.cc: CFI, not frame pointers, so -O2 code is walked correctly), and
// look at each frame:
//  - frame #0's pc is the next instruction to run: it conflicts if it lies
//    inside a busy range, exactly;
//  - frame #i>0 holds a return address, which is one past the call; for a call
//    that ends a function (to a noreturn callee) it is already the next
//    function's first byte, so we test the address minus one, which is always
//    inside the calling instruction. (Above a signal frame the pc is exact,
//    not a return address; minus one changes the verdict only at a function's
//    first byte, where the thread has not entered the function yet and will
//    run its new entry, so the rule holds there too.)
// If no thread conflicts we return with everything still held: the caller makes
// its change and releases. Otherwise we release all threads, let them run a
// moment (1 ms, doubling up to 50 ms, never past the deadline: short enough to
// catch a function that returns quickly, long enough not to stall the target
// with holds), and try again. At the deadline we refuse, naming each thread, the
// function it is in and its backtrace; the threads are running again.
//
// Incomplete backtraces. An unwind that stops part-way has still shown every
// frame up to the failure; those frames are judged like any others and the
// unseen outer ones are assumed clear. The walk fails part-way only in code
// without CFI (JIT code, hand-written assembly without directives) or past
// max_frames, and refusing every such thread forever would make some programs
// unpatchable for no visible reason. A stack that could not be unwound past its
// first frame (or not at all) shows nothing, though, so that thread is counted
// as a conflict whatever its pc: waiting is cheap, the next attempt usually
// finds it elsewhere, and if it does not, the refusal names it and says why. We
// rejected the finer rule "conservative only if the pc is in no known object":
// a pc in libc tells nothing about the patched callers above it either.
//
// Rejected alternatives. Per-thread migration (Linux livepatch, WfPatch) lets
// each thread switch when it is clear, with no global pause, but needs an
// indirection in the target that our direct jumps avoid; a function that is
// always on some stack (an event loop) cannot be patched this way either, and
// the refusal says so rather than waiting forever.
#include "consistency/stop-the-world.h"

#include <time.h>

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "common/error.h"
#include "common/interrupt.h"

namespace suture::consistency {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kFirstBackoff{1};
constexpr std::chrono::milliseconds kLongestBackoff{50};

// The busy function a backtrace is inside, if any: "" for a stack that shows
// nothing (see the essay), std::nullopt when the thread is clear.
std::optional<std::string> busy_function_of(const Backtrace& trace, const std::vector<BusyRange>& busy) {
  for (size_t i = 0; i < trace.pcs.size(); ++i) {
    RemoteAddr probe = i == 0 ? trace.pcs[i] : trace.pcs[i] - 1;
    for (const BusyRange& range : busy)
      if (range.range.contains(probe)) return range.function;
  }
  if (!trace.complete && trace.pcs.size() <= 1) return std::string();
  return std::nullopt;
}

// One attempt: unwinds every held thread; returns the conflicts.
std::vector<Conflict> find_conflicts(process::Tracee& tracee, Unwinder& unwinder,
                                     const std::vector<BusyRange>& busy) {
  std::vector<Conflict> conflicts;
  for (const process::ThreadInfo& thread : tracee.held_threads()) {
    Backtrace trace = unwinder.unwind(thread.tid, tracee.registers(thread.tid));
    if (auto function = busy_function_of(trace, busy)) {
      Conflict& c = conflicts.emplace_back();
      c.tid = thread.tid;
      c.thread_name = thread.name;
      c.function = std::move(*function);
      c.backtrace = std::move(trace);
    }
  }
  return conflicts;
}

void sleep_for(Clock::duration duration) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(duration).count();
  if (ns <= 0) return;
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  // A signal cuts the wait short (EINTR); the caller checks for an interrupt next.
  ::nanosleep(&ts, nullptr);
}

}  // namespace

SafePointResult wait_for_safe_point(process::Tracee& tracee, const std::vector<BusyRange>& busy,
                                    std::chrono::milliseconds timeout,
                                    const std::vector<CodeUnwindTables>& code_tables) {
  const auto deadline = Clock::now() + timeout;
  auto backoff = std::chrono::duration_cast<Clock::duration>(kFirstBackoff);
  Unwinder unwinder(tracee.pid(), code_tables);
  SafePointResult result;

  for (;;) {
    check_interrupt();
    ++result.attempts;
    tracee.hold_all();
    try {
      result.conflicts = find_conflicts(tracee, unwinder, busy);
    } catch (...) {
      // Never leave the target stopped because we failed to look at it.
      try {
        tracee.release_all();
      } catch (...) {
      }
      throw;
    }
    if (result.conflicts.empty()) {
      result.safe = true;
      return result;  // threads stay held for the change
    }

    tracee.release_all();
    unwinder.invalidate();  // the target runs: stacks and maps will change
    auto now = Clock::now();
    if (now >= deadline) return result;
    sleep_for(std::min<Clock::duration>(backoff, deadline - now));
    backoff = std::min<Clock::duration>(backoff * 2, kLongestBackoff);
  }
}

std::string describe(const Conflict& conflict, const Symbolizer& symbolize) {
  std::string text;
  if (!conflict.function.empty())
    text = fmt::format("thread {} ({}) is inside {}:", conflict.tid, conflict.thread_name, conflict.function);
  else
    text = fmt::format("thread {} ({}) could not be unwound, so it may be inside a changed function:",
                       conflict.tid, conflict.thread_name);
  const auto& pcs = conflict.backtrace.pcs;
  for (size_t i = 0; i < pcs.size(); ++i) {
    // A return address is symbolized at its call instruction (minus one), so a
    // call that ends a function is not shown as the start of the next one.
    RemoteAddr at = i == 0 ? pcs[i] : pcs[i] - 1;
    text += fmt::format("\n    #{} {}", i, symbolize ? symbolize(at) : to_string(at));
  }
  if (!conflict.backtrace.complete)
    text += fmt::format("\n    (backtrace incomplete: {})", conflict.backtrace.problem);
  return text;
}

}  // namespace suture::consistency
