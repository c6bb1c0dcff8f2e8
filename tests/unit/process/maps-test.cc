// /proc/PID/maps parsing, and choosing a free gap within rel32 reach.
#include "process/maps.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "common/error.h"

namespace suture::process {
namespace {

constexpr uint64_t kTop = 0x7ffffffff000ULL;

Mapping mapping(uint64_t start, uint64_t end, std::string path = "", bool exec = false) {
  Mapping m;
  m.start = RemoteAddr(start);
  m.end = RemoteAddr(end);
  m.read = true;
  m.exec = exec;
  m.path = std::move(path);
  return m;
}

uint64_t mmap_min_addr() {
  std::ifstream in("/proc/sys/vm/mmap_min_addr");
  uint64_t value = 65536;
  in >> value;
  return std::max<uint64_t>(value, 4096);
}

// Every byte of [start, start+size) within reach of every byte of near.
bool within_reach(RemoteAddr start, uint64_t size, RemoteRange near, uint64_t reach) {
  uint64_t lo = start.value(), hi = lo + size;
  uint64_t nlo = near.start.value(), nhi = near.end().value();
  bool disjoint = hi <= nlo || lo >= nhi;
  uint64_t farthest = lo >= nhi ? hi - nlo : nhi - lo;
  return disjoint && farthest <= reach;
}

TEST(Maps, ReadsOurOwnMapsIncludingPathsWithSpaces) {
  char path[] = "/tmp/suture maps test XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 8192), 0);
  void* at = mmap(nullptr, 8192, PROT_READ, MAP_SHARED, fd, 4096 * 0);
  ASSERT_NE(at, MAP_FAILED);
  auto maps = read_maps(getpid());
  bool found_file = false, found_stack = false, found_exec = false;
  for (const auto& m : maps) {
    if (m.path == path) {
      found_file = true;
      EXPECT_EQ(m.start.value(), reinterpret_cast<uint64_t>(at));
      EXPECT_EQ(m.end - m.start, 8192);
      EXPECT_TRUE(m.read);
      EXPECT_FALSE(m.write);
      EXPECT_TRUE(m.shared);
      EXPECT_NE(m.inode, 0u);
    }
    found_stack |= m.path == "[stack]";
    found_exec |= m.exec;
  }
  EXPECT_TRUE(found_file);
  EXPECT_TRUE(found_stack);
  EXPECT_TRUE(found_exec);
  for (size_t i = 1; i < maps.size(); ++i) EXPECT_LE(maps[i - 1].end, maps[i].start);
  munmap(at, 8192);
  close(fd);
  unlink(path);
}

TEST(Maps, ANonexistentProcessIsTargetGone) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status;
  waitpid(child, &status, 0);
  EXPECT_THROW(read_maps(child), TargetGone);
}

TEST(FindFreeNear, TakesTheClosestGapThatFits) {
  std::vector<Mapping> maps = {
      mapping(0x10000000, 0x10010000, "/bin/app", true),
      mapping(0x10012000, 0x10020000, "/bin/app"),  // an 8 KiB hole after the text
      mapping(0x20000000, 0x20001000, "[heap]"),
  };
  RemoteRange near{RemoteAddr(0x10000000), 0x20000};
  auto small = find_free_near(maps, near, 0x2000);
  ASSERT_TRUE(small);
  EXPECT_EQ(small->value(), 0x10010000u);  // the hole itself
  auto big = find_free_near(maps, near, 0x10000);
  ASSERT_TRUE(big);
  // The hole is too small; right after the object, or right before it.
  EXPECT_TRUE(big->value() == 0x10020000u || big->value() == 0x10000000u - 0x10000u) << big->value();
  EXPECT_TRUE(within_reach(*big, 0x10000, near, 0x7fff0000));
}

TEST(FindFreeNear, KeepsTheWholeBlockWithinReachBothWays) {
  const uint64_t base = 0x7f0000000000ULL;
  RemoteRange near{RemoteAddr(base), 0x100000};
  // Everything within 3 GiB is taken except a gap 2.5 GiB above: out of reach.
  std::vector<Mapping> maps = {
      mapping(base - (3ULL << 30), base, "filler"),
      mapping(base, base + 0x100000, "/lib/x.so", true),
      mapping(base + 0x100000, base + (5ULL << 29), "filler"),
      mapping(base + (5ULL << 29) + 0x10000, base + (3ULL << 30), "filler"),
  };
  EXPECT_FALSE(find_free_near(maps, near, 0x1000));
  // A gap 1 GiB above is fine.
  maps[2].end = RemoteAddr(base + (1ULL << 30));
  maps[3].start = RemoteAddr(base + (1ULL << 30) + 0x10000);
  auto found = find_free_near(maps, near, 0x10000);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->value(), base + (1ULL << 30));
  // A gap that straddles the reach limit: only its reachable part is used.
  maps[2].end = RemoteAddr(base + 0x7fff0000 - 0x8000);
  maps[3].start = RemoteAddr(base + 0x7fff0000ULL + 0x100000);
  found = find_free_near(maps, near, 0x8000);  // ends exactly at the limit
  ASSERT_TRUE(found);
  EXPECT_EQ(found->value(), base + 0x7fff0000 - 0x8000);
  EXPECT_FALSE(find_free_near(maps, near, 0x9000)) << "the block would end beyond the reach of near.start";
  found = find_free_near(maps, near, 0x1000, 0x7fff0000ULL + 0x100000);
  ASSERT_TRUE(found);
  EXPECT_TRUE(within_reach(*found, 0x1000, near, 0x7fff0000ULL + 0x100000)) << std::hex << found->value();
}

TEST(FindFreeNear, LeavesRoomForTheStackToGrow) {
  const uint64_t stack_end = kTop;
  const uint64_t stack_start = stack_end - 0x21000;
  const uint64_t lib_end = stack_start - (2ULL << 20);  // a 2 MiB gap below the stack
  std::vector<Mapping> maps = {
      mapping(0x10000, lib_end - 0x1000, "filler"),
      mapping(lib_end - 0x1000, lib_end, "/lib/x.so", true),
      mapping(stack_start, stack_end, "[stack]"),
  };
  RemoteRange near{RemoteAddr(lib_end - 0x1000), 0x1000};
  EXPECT_FALSE(find_free_near(maps, near, 0x1000));
  // With 32 MiB below the stack, the block goes right after the library.
  const uint64_t roomy_end = stack_start - (32ULL << 20);
  maps[0].end = RemoteAddr(roomy_end - 0x1000);
  maps[1] = mapping(roomy_end - 0x1000, roomy_end, "/lib/x.so", true);
  near = {RemoteAddr(roomy_end - 0x1000), 0x1000};
  auto found = find_free_near(maps, near, 0x1000);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->value(), roomy_end);
  // ...but never within the stack's growth room.
  found = find_free_near(maps, near, 30ULL << 20);
  EXPECT_FALSE(found);
}

TEST(FindFreeNear, StaysAboveMmapMinAddr) {
  const uint64_t floor = mmap_min_addr();
  std::vector<Mapping> maps = {mapping(0x20000 + floor, kTop, "filler")};
  RemoteRange near{RemoteAddr(0x20000 + floor), 0x1000};
  auto found = find_free_near(maps, near, 0x1000);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->value(), floor + 0x20000 - 0x1000);
  EXPECT_FALSE(find_free_near(maps, near, 0x21000));
  EXPECT_TRUE(find_free_near(maps, near, 0x20000));
  EXPECT_EQ(find_free_near(maps, near, 0x20000)->value(), floor);
}

TEST(FindFreeNear, RoundsSizesToPages) {
  std::vector<Mapping> maps = {mapping(0x0fff0000, 0x10000000, "x"), mapping(0x10000000, 0x10001000, "/bin/app", true),
                               mapping(0x10002000, 0x10003000, "x")};
  RemoteRange near{RemoteAddr(0x10000000), 0x1000};
  auto found = find_free_near(maps, near, 1);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->value(), 0x10001000u);
  EXPECT_EQ(found->value() % 4096, 0u);
  EXPECT_FALSE(find_free_near(maps, near, 0));
}

}  // namespace
}  // namespace suture::process
