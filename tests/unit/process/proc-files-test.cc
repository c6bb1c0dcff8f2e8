// What suture reads of a thread from /proc, judged against a fixture thread
// whose activity the test drives.
#include "process/proc-files.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "fixture-process.h"

namespace suture::process {
namespace {

using namespace std::chrono_literals;
using testing::FixtureProcess;
using testing::thread_named;

// A thread blocked in read() is put on a CPU again only when its data comes.
TEST(ProcFiles, TimesScheduledMovesOnlyWhenTheThreadRuns) {
  FixtureProcess fixture(FIXTURE_PATH);
  pid_t reader = thread_named(fixture.pid(), "reader-0");
  ASSERT_NE(reader, 0);
  auto blocked = [&] { return blocked_view(fixture.pid(), reader).has_value(); };
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!blocked() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(blocked());

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

}  // namespace
}  // namespace suture::process
