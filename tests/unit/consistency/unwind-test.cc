// The Unwinder against a real process built with -O2 -fomit-frame-pointer. The
// threads are held here with raw ptrace (seize + interrupt), independently of
// process::Tracee, so these tests judge the unwinder alone.
#include "consistency/unwind.h"

#include <libunwind-ptrace.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <stdexcept>

#include <gtest/gtest.h>

#include "common/error.h"
#include "fixture-process.h"

namespace suture::consistency {
namespace {

using testing::FixtureProcess;
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Holds every thread of a process with PTRACE_SEIZE + PTRACE_INTERRUPT until
// destroyed (or released).
class RawHold {
 public:
  explicit RawHold(const FixtureProcess& process) : tids_(process.tasks()) {
    for (pid_t tid : tids_)
      if (ptrace(PTRACE_SEIZE, tid, nullptr, nullptr) != 0) throw std::runtime_error("PTRACE_SEIZE failed");
    for (pid_t tid : tids_) ptrace(PTRACE_INTERRUPT, tid, nullptr, nullptr);
    for (pid_t tid : tids_) {
      int status = 0;
      if (waitpid(tid, &status, __WALL) != tid || !WIFSTOPPED(status))
        throw std::runtime_error("thread did not stop");
    }
  }
  ~RawHold() { release(); }
  void release() {
    for (pid_t tid : tids_) ptrace(PTRACE_DETACH, tid, nullptr, nullptr);
    tids_.clear();
  }
  const std::vector<pid_t>& tids() const { return tids_; }

 private:
  std::vector<pid_t> tids_;
};

// Frame i of `trace` lies in `range` (return addresses are tested minus one).
bool frame_in(const Backtrace& trace, size_t i, const RemoteRange& range) {
  return range.contains(i == 0 ? trace.pcs[i] : trace.pcs[i] - 1);
}

size_t frames_in(const Backtrace& trace, const RemoteRange& range) {
  size_t count = 0;
  for (size_t i = 0; i < trace.pcs.size(); ++i) count += frame_in(trace, i, range);
  return count;
}

std::string show(const Backtrace& trace) {
  std::string text = "thread " + std::to_string(trace.tid) + (trace.complete ? "" : " (" + trace.problem + ")");
  for (size_t i = 0; i < trace.pcs.size(); ++i) text += "\n  #" + std::to_string(i) + " " + to_string(trace.pcs[i]);
  return text;
}

TEST(Unwinder, FindsEveryThreadWhereItIsParked) {
  FixtureProcess fixture;
  RawHold hold(fixture);
  Unwinder unwinder(fixture.pid());

  for (const auto& [name, tid] : fixture.threads()) {
    Backtrace trace = unwinder.unwind(tid);
    SCOPED_TRACE(name + ": " + show(trace));
    EXPECT_EQ(trace.tid, tid);
    EXPECT_TRUE(trace.complete) << trace.problem;
    ASSERT_GE(trace.pcs.size(), 3u);
    bool parked = name.rfind("parked-", 0) == 0;
    EXPECT_EQ(frames_in(trace, fixture.function("busy")) > 0, parked);
    if (parked) {
      EXPECT_EQ(frames_in(trace, fixture.function("parked_main")), 1u);
    }
    if (name == "deep") {
      EXPECT_EQ(frames_in(trace, fixture.function("bottom")), 1u);
      EXPECT_EQ(frames_in(trace, fixture.function("recurse")), 41u);  // kDepth + 1 calls
      EXPECT_EQ(frames_in(trace, fixture.function("deep_main")), 1u);
    }
    if (name == "lingerer") {
      EXPECT_EQ(frames_in(trace, fixture.function("idle")), 1u);
      EXPECT_EQ(frames_in(trace, fixture.function("linger")), 0u);
    }
    if (name == "main") {
      EXPECT_EQ(frames_in(trace, fixture.function("main")), 1u);
    }
    EXPECT_EQ(frames_in(trace, fixture.function("nobody")), 0u);
  }
}

TEST(Unwinder, StopsAtMaxFrames) {
  FixtureProcess fixture;
  RawHold hold(fixture);
  Unwinder unwinder(fixture.pid());
  Backtrace trace = unwinder.unwind(fixture.thread("deep"), 10);
  EXPECT_EQ(trace.pcs.size(), 10u);
  EXPECT_FALSE(trace.complete);
  EXPECT_NE(trace.problem.find("10 frames"), std::string::npos) << trace.problem;

  Backtrace whole = unwinder.unwind(fixture.thread("deep"));
  ASSERT_TRUE(whole.complete) << whole.problem;
  EXPECT_EQ(std::vector<RemoteAddr>(whole.pcs.begin(), whole.pcs.begin() + 10), trace.pcs);
  // Exactly as many frames as the stack has is complete.
  Backtrace exact = unwinder.unwind(fixture.thread("deep"), whole.pcs.size());
  EXPECT_TRUE(exact.complete) << exact.problem;
  EXPECT_EQ(exact.pcs, whole.pcs);
}

// The live switch copies a held thread's stack, lets the thread go, and
// unwinds from the copy: that must give what an unwind of the held thread
// gives, and say so when a frame lies beyond the copy.
TEST(Unwinder, UnwindsFromACopyOfTheStackAsFromTheHeldThread) {
  FixtureProcess fixture;
  RawHold hold(fixture);
  Unwinder unwinder(fixture.pid());
  for (const auto& [name, tid] : fixture.threads()) {
    SCOPED_TRACE(name);
    Backtrace live = unwinder.unwind(tid);
    ASSERT_TRUE(live.complete) << live.problem;
    user_regs_struct regs{};
    ASSERT_EQ(ptrace(PTRACE_GETREGS, tid, nullptr, &regs), 0);
    unwinder.snapshot_stack(RemoteAddr(regs.rsp), 64 * 1024);
    Backtrace copied = unwinder.unwind(tid, regs);
    EXPECT_TRUE(unwinder.thaw()) << name;
    EXPECT_EQ(copied.pcs, live.pcs) << show(copied) << "\nheld:\n" << show(live);
  }
  // A copy that misses the thread's frames (taken from a page above its stack
  // pointer): the stack is writable memory, so it is never read live instead.
  pid_t deep = fixture.thread("deep");
  user_regs_struct regs{};
  ASSERT_EQ(ptrace(PTRACE_GETREGS, deep, nullptr, &regs), 0);
  unwinder.snapshot_stack(RemoteAddr((regs.rsp | 4095) + 1), 64);
  Backtrace cut = unwinder.unwind(deep, regs);
  EXPECT_FALSE(unwinder.thaw()) << show(cut);
  EXPECT_FALSE(cut.complete);
  // After thaw() the unwinder reads the live stack again.
  Backtrace again = unwinder.unwind(deep, regs);
  EXPECT_TRUE(again.complete) << again.problem;
}

TEST(Unwinder, ReportsAThreadThatIsNotHeld) {
  FixtureProcess fixture;
  Unwinder unwinder(fixture.pid());
  Backtrace trace = unwinder.unwind(fixture.thread("deep"));
  EXPECT_FALSE(trace.complete);
  EXPECT_TRUE(trace.pcs.empty());
  EXPECT_NE(trace.problem.find("registers"), std::string::npos) << trace.problem;
}

TEST(Unwinder, InvalidateSeesTheThreadMove) {
  FixtureProcess fixture;
  Unwinder unwinder(fixture.pid());
  pid_t lingerer = fixture.thread("lingerer");
  {
    RawHold hold(fixture);
    Backtrace trace = unwinder.unwind(lingerer);
    EXPECT_EQ(frames_in(trace, fixture.function("linger")), 0u) << show(trace);
  }
  fixture.send("linger 5000");
  fixture.expect("lingering");
  RawHold hold(fixture);
  unwinder.invalidate();
  Backtrace trace = unwinder.unwind(lingerer);
  EXPECT_TRUE(trace.complete) << trace.problem;
  EXPECT_EQ(frames_in(trace, fixture.function("linger")), 1u) << show(trace);
  EXPECT_EQ(frames_in(trace, fixture.function("idle")), 0u) << show(trace);
}

TEST(Unwinder, ThrowsForAProcessThatDoesNotExist) {
  EXPECT_THROW(Unwinder(999'999'999), TargetGone);
}

// Unwinds every thread the way libunwind-ptrace alone would: one _UPT context
// per thread, memory and registers by PTRACE_PEEK*. For comparison only.
size_t unwind_with_upt_only(pid_t pid, const std::vector<pid_t>& tids) {
  (void)pid;
  unw_addr_space_t as = unw_create_addr_space(&_UPT_accessors, 0);
  unw_set_caching_policy(as, UNW_CACHE_GLOBAL);
  size_t frames = 0;
  for (pid_t tid : tids) {
    void* upt = _UPT_create(tid);
    unw_cursor_t cursor;
    if (unw_init_remote(&cursor, as, upt) == 0) {
      do ++frames;
      while (unw_step(&cursor) > 0 && frames < 1'000'000);
    }
    _UPT_destroy(upt);
  }
  unw_destroy_addr_space(as);
  return frames;
}

TEST(Unwinder, TimeToUnwindManyThreads) {
  // Mostly shallow stacks (a pool of identical workers), some 45 frames deep.
  constexpr int kParked = 448;
  constexpr int kDeep = 64;
  FixtureProcess fixture({"--parked", std::to_string(kParked), "--deep", std::to_string(kDeep)});
  auto start = Clock::now();
  RawHold hold(fixture);
  double hold_ms = ms_since(start);
  const auto& tids = hold.tids();

  auto unwind_all = [&](Unwinder& unwinder, size_t& frames) {
    frames = 0;
    size_t in_busy = 0;
    for (pid_t tid : tids) {
      Backtrace trace = unwinder.unwind(tid);
      EXPECT_TRUE(trace.complete) << show(trace);
      frames += trace.pcs.size();
      in_busy += frames_in(trace, fixture.function("busy")) > 0;
    }
    EXPECT_EQ(in_busy, static_cast<size_t>(kParked));
  };

  size_t frames = 0;
  start = Clock::now();
  Unwinder unwinder(fixture.pid());
  unwind_all(unwinder, frames);
  double cold_ms = ms_since(start);

  start = Clock::now();
  unwind_all(unwinder, frames);
  double warm_ms = ms_since(start);

  start = Clock::now();
  unwinder.invalidate();
  unwind_all(unwinder, frames);
  double invalidated_ms = ms_since(start);

  start = Clock::now();
  size_t upt_frames = unwind_with_upt_only(fixture.pid(), tids);
  double upt_ms = ms_since(start);

  std::printf(
      "[ timing   ] %zu threads, %zu frames: hold %.1f ms; unwind: first %.1f ms, again %.1f ms, "
      "after invalidate %.1f ms; libunwind-ptrace alone %.1f ms (%zu frames)\n",
      tids.size(), frames, hold_ms, cold_ms, warm_ms, invalidated_ms, upt_ms, upt_frames);
}

}  // namespace
}  // namespace suture::consistency
