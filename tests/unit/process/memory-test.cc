// Reading and writing another process's memory, read-only text included.
#include "process/memory.h"

#include <gtest/gtest.h>

#include "common/error.h"
#include "fixture-process.h"
#include "process/maps.h"

namespace suture::process {
namespace {

using testing::FixtureProcess;

TEST(Memory, WritesReachReadOnlyTextAndReadBack) {
  FixtureProcess fixture(FIXTURE_PATH);
  Memory memory(fixture.pid());
  RemoteAddr never(fixture.value("never"));
  bool in_text = false;
  for (const auto& m : read_maps(fixture.pid()))
    if (never >= m.start && never < m.end) in_text = m.exec && !m.write;
  ASSERT_TRUE(in_text) << "fixture_never_called should be in r-x text";

  auto original = memory.read(never, 16);
  std::vector<uint8_t> changed = original;
  for (auto& b : changed) b = static_cast<uint8_t>(~b);
  memory.write(never, changed);
  EXPECT_EQ(memory.read(never, 16), changed);
  memory.write(never, original);
  EXPECT_EQ(memory.read(never, 16), original);
  uint64_t word = memory.read_u64(never);
  EXPECT_EQ(std::memcmp(&word, original.data(), 8), 0);
  // Still running normally.
  EXPECT_EQ(fixture.status()["errors"], 0);
}

TEST(Memory, ErrorsNameTheAddress) {
  FixtureProcess fixture(FIXTURE_PATH);
  Memory memory(fixture.pid());
  try {
    memory.read(RemoteAddr(0x10), 8);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("0x10"), std::string::npos) << e.what();
  }
  EXPECT_THROW(memory.write(RemoteAddr(0x10), std::vector<uint8_t>{1}), Error);
}

TEST(Memory, ReadPartialStopsAtTheFirstUnreadablePage) {
  FixtureProcess fixture(FIXTURE_PATH);
  Memory memory(fixture.pid());
  // The end of the last mapping before a hole.
  auto maps = read_maps(fixture.pid());
  for (size_t i = 0; i + 1 < maps.size(); ++i) {
    if (maps[i].end == maps[i + 1].start || !maps[i].read) continue;
    std::vector<uint8_t> out(8192);
    size_t got = memory.read_partial(maps[i].end - 100, out);
    EXPECT_EQ(got, 100u);
    return;
  }
  GTEST_SKIP() << "no readable mapping followed by a hole";
}

TEST(Memory, ANonexistentProcessIsTargetGone) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status;
  waitpid(child, &status, 0);
  EXPECT_THROW(Memory memory(child), TargetGone);
}

TEST(Memory, ADeadProcessIsTargetGone) {
  auto fixture = std::make_unique<FixtureProcess>(FIXTURE_PATH);
  Memory memory(fixture->pid());
  RemoteAddr add(fixture->value("add"));
  kill(fixture->pid(), SIGKILL);
  fixture->reap();
  EXPECT_THROW(memory.read(add, 8), TargetGone);
}

}  // namespace
}  // namespace suture::process
