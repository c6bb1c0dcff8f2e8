// Where a live switch's controller settles: on a CPU the target may not use,
// if there is one, else where it runs.
#include "process/cpu-placement.h"

#include <sched.h>

#include <cerrno>

#include <thread>

#include <gtest/gtest.h>

#include "fixture-process.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {

using testing::FixtureProcess;

// Every thread of `pid` (those that end meanwhile aside); the threads it
// makes later inherit their maker's.
void pin_process(pid_t pid, const cpu_set_t& set) {
  for (pid_t tid : list_threads(pid))
    if (sched_setaffinity(tid, sizeof set, &set) != 0) {
      ASSERT_EQ(errno, ESRCH) << "thread " << tid;
    }
}

cpu_set_t affinity_of(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(tid, sizeof set, &set), 0);
  return set;
}

struct Settled {
  int cpu;
  cpu_set_t affinity;  // of the thread, after
  bool apart;          // runs_apart_from(pid), after
};

// Runs settle_on_one_cpu(pid) on a thread of its own (the test's own
// affinity stays as it is).
Settled settle_from_a_new_thread(pid_t pid) {
  Settled settled{};
  std::thread([&] {
    settled.cpu = settle_on_one_cpu(pid);
    settled.affinity = affinity_of(0);
    settled.apart = runs_apart_from(pid);
  }).join();
  return settled;
}

TEST(CpuPlacement, TakesACpuTheTargetMayNotUse) {
  cpu_set_t ours = affinity_of(0);
  if (CPU_COUNT(&ours) < 2) GTEST_SKIP() << "needs two CPUs";
  int first = 0;
  while (!CPU_ISSET(first, &ours)) ++first;
  FixtureProcess fixture(FIXTURE_PATH);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(first, &one);
  pin_process(fixture.pid(), one);

  auto [cpu, after, apart] = settle_from_a_new_thread(fixture.pid());
  ASSERT_GE(cpu, 0);
  EXPECT_NE(cpu, first);
  EXPECT_TRUE(CPU_ISSET(cpu, &ours));
  EXPECT_EQ(CPU_COUNT(&after), 1);
  EXPECT_TRUE(CPU_ISSET(cpu, &after));
  EXPECT_TRUE(apart);
  EXPECT_FALSE(runs_apart_from(fixture.pid()));  // the test's own thread may use every CPU
}

TEST(CpuPlacement, StaysWhereItRunsWhenTheTargetMayUseEveryCpu) {
  cpu_set_t ours = affinity_of(0);
  FixtureProcess fixture(FIXTURE_PATH);
  pin_process(fixture.pid(), ours);

  auto [cpu, after, apart] = settle_from_a_new_thread(fixture.pid());
  ASSERT_GE(cpu, 0);
  EXPECT_TRUE(CPU_ISSET(cpu, &ours));
  EXPECT_EQ(CPU_COUNT(&after), 1);
  EXPECT_TRUE(CPU_ISSET(cpu, &after));
  EXPECT_FALSE(apart);
  cpu_set_t still = affinity_of(0);
  EXPECT_TRUE(CPU_EQUAL(&ours, &still));  // the caller's own is untouched
}

}  // namespace
}  // namespace suture::process
