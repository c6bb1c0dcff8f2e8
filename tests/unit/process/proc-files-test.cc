// What suture reads of a thread from /proc, judged against a fixture thread
// whose activity the test drives.
#include "process/proc-files.h"

#include <signal.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "fixture-process.h"

namespace suture::process {
namespace {

using namespace std::chrono_literals;
using testing::FixtureProcess;
using testing::thread_named;

// The fixture's reader-0 once it is blocked in read() on its empty pipe; 0 if
// it never is.
pid_t blocked_reader(FixtureProcess& fixture) {
  pid_t reader = thread_named(fixture.pid(), "reader-0");
  if (reader == 0) return 0;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!blocked_view(fixture.pid(), reader) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  return blocked_view(fixture.pid(), reader) ? reader : 0;
}

// A thread blocked in read() is put on a CPU again only when its data comes.
TEST(ProcFiles, TimesScheduledMovesOnlyWhenTheThreadRuns) {
  FixtureProcess fixture(FIXTURE_PATH);
  pid_t reader = blocked_reader(fixture);
  ASSERT_NE(reader, 0);

  auto before = times_scheduled(fixture.pid(), reader);
  ASSERT_TRUE(before.has_value());
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(times_scheduled(fixture.pid(), reader), before);

  fixture.send("feed 0 hello");
  EXPECT_EQ(fixture.expect("read "), "read 0 hello");
  auto after = times_scheduled(fixture.pid(), reader);
  ASSERT_TRUE(after.has_value());
  EXPECT_GT(*after, *before);

  EXPECT_FALSE(times_scheduled(fixture.pid(), 0x7ffffff0).has_value());  // no such thread
}

TEST(ProcFiles, SchedStatReadsItsThreeCounts) {
  auto stat = parse_sched_stat("67753636 86248 16\n");
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->on_cpu_ns, 67753636u);
  EXPECT_EQ(stat->waiting_ns, 86248u);
  EXPECT_EQ(stat->timeslices, 16u);
  EXPECT_FALSE(parse_sched_stat("67753636 86248\n").has_value());
  EXPECT_FALSE(parse_sched_stat("").has_value());
  EXPECT_FALSE(parse_sched_stat("x 1 2\n").has_value());
}

// The file kept open reads what a fresh open reads, each read anew (the thread
// ran meanwhile), and nothing once its thread is gone.
TEST(ProcFiles, SchedStatFileFollowsItsThreadUntilItIsGone) {
  FixtureProcess fixture(FIXTURE_PATH);
  pid_t reader = blocked_reader(fixture);
  ASSERT_NE(reader, 0);

  SchedStatFile file(fixture.pid(), reader);
  auto before = file.read();
  ASSERT_TRUE(before.has_value());
  auto fresh = sched_stat(fixture.pid(), reader);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_EQ(before->on_cpu_ns, fresh->on_cpu_ns);
  EXPECT_EQ(before->waiting_ns, fresh->waiting_ns);
  EXPECT_EQ(before->timeslices, fresh->timeslices);

  fixture.send("feed 0 hello");
  EXPECT_EQ(fixture.expect("read "), "read 0 hello");
  SchedStatFile moved = std::move(file);
  auto after = moved.read();
  ASSERT_TRUE(after.has_value());
  EXPECT_GT(after->timeslices, before->timeslices);
  EXPECT_GT(after->on_cpu_ns, before->on_cpu_ns);

  kill(fixture.pid(), SIGKILL);
  fixture.reap();
  EXPECT_FALSE(moved.read().has_value());
}

}  // namespace
}  // namespace suture::process
