// wait_for_safe_point against a running fixture: threads parked forever in
// busy(), a thread that leaves linger() after a while, and a function no
// thread is in. Timings have wide margins: these run on loaded machines.
#include "consistency/stop-the-world.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/interrupt.h"
#include "fixture-process.h"

namespace suture::consistency {
namespace {

using testing::FixtureProcess;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

BusyRange busy_range(const FixtureProcess& fixture, const std::string& function) {
  return BusyRange{fixture.function(function), function};
}

std::set<pid_t> parked_threads(const FixtureProcess& fixture) {
  std::set<pid_t> tids;
  for (const auto& [name, tid] : fixture.threads())
    if (name.rfind("parked-", 0) == 0) tids.insert(tid);
  return tids;
}

void expect_running_and_untraced(FixtureProcess& fixture) {
  for (pid_t tid : fixture.tasks()) EXPECT_EQ(fixture.tracer_of(tid), 0) << "thread " << tid;
  EXPECT_TRUE(fixture.responds());
}

TEST(WaitForSafePoint, NobodyInsideIsSafeAtOnceWithEveryThreadHeld) {
  FixtureProcess fixture;
  process::Tracee tracee(fixture.pid());
  SafePointResult result = wait_for_safe_point(tracee, {busy_range(fixture, "nobody")}, 5000ms);
  EXPECT_TRUE(result.safe);
  EXPECT_EQ(result.attempts, 1);
  EXPECT_TRUE(result.conflicts.empty());
  EXPECT_TRUE(tracee.all_held());
  std::set<pid_t> held, tasks;
  for (const auto& thread : tracee.held_threads()) held.insert(thread.tid);
  for (pid_t tid : fixture.tasks()) tasks.insert(tid);
  EXPECT_EQ(held, tasks);
  for (pid_t tid : fixture.tasks()) EXPECT_EQ(fixture.tracer_of(tid), getpid()) << "thread " << tid;

  tracee.release_all();
  expect_running_and_untraced(fixture);
}

TEST(WaitForSafePoint, AFunctionNeverLeftTimesOutNamingTheThreads) {
  FixtureProcess fixture;
  process::Tracee tracee(fixture.pid());
  auto start = Clock::now();
  SafePointResult result =
      wait_for_safe_point(tracee, {busy_range(fixture, "nobody"), busy_range(fixture, "busy")}, 300ms);
  auto elapsed = Clock::now() - start;

  EXPECT_FALSE(result.safe);
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 10s);
  EXPECT_GE(result.attempts, 2);
  EXPECT_FALSE(tracee.all_held());

  std::set<pid_t> conflicting;
  for (const Conflict& c : result.conflicts) {
    conflicting.insert(c.tid);
    EXPECT_EQ(c.function, "busy");
    EXPECT_EQ(c.thread_name.rfind("parked-", 0), 0u) << c.thread_name;
    EXPECT_TRUE(c.backtrace.complete) << c.backtrace.problem;
    EXPECT_EQ(fixture.thread(c.thread_name), c.tid);
    std::string text = describe(c, {});
    EXPECT_EQ(text.rfind("thread " + std::to_string(c.tid) + " (" + c.thread_name + ") is inside busy:\n    #0 ", 0),
              0u)
        << text;
  }
  EXPECT_EQ(conflicting, parked_threads(fixture));
  std::printf("[ attempts ] %d in 300 ms\n%s\n", result.attempts,
              result.conflicts.empty() ? "" : describe(result.conflicts.front(), {}).c_str());

  expect_running_and_untraced(fixture);
}

TEST(WaitForSafePoint, AFunctionLeftAfter200MsBecomesSafe) {
  FixtureProcess fixture;
  process::Tracee tracee(fixture.pid());
  fixture.send("linger 200");
  fixture.expect("lingering");
  auto start = Clock::now();
  SafePointResult result = wait_for_safe_point(tracee, {busy_range(fixture, "linger")}, 10s);
  auto elapsed = Clock::now() - start;
  EXPECT_TRUE(result.safe);
  EXPECT_TRUE(result.conflicts.empty());
  EXPECT_TRUE(tracee.all_held());
  std::printf("[ attempts ] %d, safe after %.1f ms\n", result.attempts,
              std::chrono::duration<double, std::milli>(elapsed).count());
  tracee.release_all();
  fixture.expect("lingered");
  expect_running_and_untraced(fixture);
}

TEST(WaitForSafePoint, AnInterruptStopsTheWaitWithTheThreadsReleased) {
  FixtureProcess fixture;
  process::Tracee tracee(fixture.pid());
  install_interrupt_handlers();
  clear_interrupt();
  // raise() signals the calling thread only, so the thread that traces is not
  // disturbed; wait_for_safe_point sees the flag after its next backoff.
  std::thread interrupter([] {
    std::this_thread::sleep_for(100ms);
    raise(SIGINT);
  });
  auto start = Clock::now();
  EXPECT_THROW(wait_for_safe_point(tracee, {busy_range(fixture, "busy")}, 20s), Interrupted);
  auto elapsed = Clock::now() - start;
  interrupter.join();
  clear_interrupt();
  EXPECT_LT(elapsed, 10s);
  EXPECT_FALSE(tracee.all_held());
  expect_running_and_untraced(fixture);
}

TEST(Describe, NamesTheThreadTheFunctionAndEveryFrame) {
  Conflict c;
  c.tid = 1234;
  c.thread_name = "worker-3";
  c.function = "parse_request";
  c.backtrace.tid = 1234;
  c.backtrace.pcs = {RemoteAddr(0x1000), RemoteAddr(0x2001)};
  auto symbolize = [](RemoteAddr a) { return "f" + to_string(a); };
  EXPECT_EQ(describe(c, symbolize),
            "thread 1234 (worker-3) is inside parse_request:\n"
            "    #0 f0x1000\n"
            "    #1 f0x2000");

  c.function.clear();
  c.backtrace.pcs.resize(1);
  c.backtrace.complete = false;
  c.backtrace.problem = "no unwind info";
  EXPECT_EQ(describe(c, symbolize),
            "thread 1234 (worker-3) could not be unwound, so it may be inside a changed function:\n"
            "    #0 f0x1000\n"
            "    (backtrace incomplete: no unwind info)");
}

}  // namespace
}  // namespace suture::consistency
