// The transition stubs run for real in this process: a page near the code
// holds the stubs and their tables (RW while written, then RX for the stubs
// only), glibc gives the tid offset, and threads of the test call through them.
#include "redirect/transition-stubs.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"

extern "C" {
__attribute__((noinline)) long old_version(long x) { return x + 1; }
__attribute__((noinline)) long new_version(long x) { return x + 2; }
__attribute__((noinline)) long request(long x) { return x + 3; }
// A function whose first instructions are several pushes: its old entry is
// copied out of line and must compute the same.
__attribute__((noinline)) long with_prologue(long a, long b) {
  long s = 0;
  for (long i = 0; i < a; i++) s += old_version(i * b);
  asm volatile("" : "+r"(s)::"rbx", "rbp", "r12", "r13", "r14", "r15");
  return s;
}
}

namespace suture::redirect {
namespace {

using Fn = long (*)(long);

// glibc publishes where struct pthread keeps the tid for debuggers.
uint32_t tid_offset() {
  auto* descriptor = static_cast<const uint32_t*>(dlsym(RTLD_DEFAULT, "_thread_db_pthread_tid"));
  if (descriptor) return descriptor[2];
  // Otherwise find it: the 32-bit word of our own struct pthread that is our tid.
  auto* self = reinterpret_cast<const uint32_t*>(pthread_self());
  for (uint32_t i = 0; i < 1024; ++i)
    if (self[i] == static_cast<uint32_t>(gettid())) return i * 4;
  return 0;
}

// One page of stubs and one of tables, within rel32 reach of this test's code.
class Arena {
 public:
  Arena() {
    auto near = reinterpret_cast<uintptr_t>(&old_version) & ~uintptr_t{0xfff};
    for (uintptr_t hint = near + (64u << 20); !base_; hint += 1u << 20) {
      void* p = mmap(reinterpret_cast<void*>(hint), kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p != MAP_FAILED) base_ = static_cast<uint8_t*>(p);
    }
    tables_.switched_by_thread = RemoteAddr(reinterpret_cast<uint64_t>(base_ + 4096));
    tables_.switched_by_suture = RemoteAddr(reinterpret_cast<uint64_t>(base_ + 4096 + 4 * kSlots));
    tables_.slots = kSlots;
    tables_.tid_offset = tid_offset();
  }
  ~Arena() { munmap(base_, kSize); }

  RemoteAddr code(size_t offset) const { return RemoteAddr(reinterpret_cast<uint64_t>(base_ + offset)); }
  void put(size_t offset, const std::vector<uint8_t>& bytes) { std::memcpy(base_ + offset, bytes.data(), bytes.size()); }
  void seal() { ASSERT_EQ(mprotect(base_, 4096, PROT_READ | PROT_EXEC), 0); }
  uint64_t& counter() { return *reinterpret_cast<uint64_t*>(base_ + 4096 + 8 * kSlots); }
  uint32_t* suture_table() { return reinterpret_cast<uint32_t*>(base_ + 4096 + 4 * kSlots); }
  const TransitionTables& tables() const { return tables_; }

  static constexpr uint32_t kSlots = 256;
  static constexpr size_t kSize = 4096 + 8 * kSlots + 4096;

 private:
  uint8_t* base_ = nullptr;
  TransitionTables tables_;
};

RemoteAddr address_of(const void* f) { return RemoteAddr(reinterpret_cast<uint64_t>(f)); }

TEST(TransitionStubs, EachThreadRunsTheOldVersionUntilItPassesTheSafePoint) {
  ASSERT_NE(tid_offset(), 0u);
  Arena arena;
  auto dispatcher = encode_dispatcher(arena.code(0), arena.tables(), address_of(reinterpret_cast<void*>(&new_version)),
                                      address_of(reinterpret_cast<void*>(&old_version)),
                                      RemoteAddr(reinterpret_cast<uint64_t>(&arena.counter())));
  arena.put(0, dispatcher);
  auto hook = encode_safe_point_hook(arena.code(512), arena.tables(), address_of(reinterpret_cast<void*>(&request)));
  arena.put(512, hook);
  arena.seal();
  auto dispatch = reinterpret_cast<Fn>(arena.code(0).value());
  auto enter_request = reinterpret_cast<Fn>(arena.code(512).value());

  EXPECT_EQ(dispatch(10), 11);  // not switched: old
  EXPECT_EQ(arena.counter(), 1u);
  EXPECT_EQ(enter_request(10), 13);  // the safe point continues into the request
  EXPECT_EQ(dispatch(10), 12);  // switched: new
  EXPECT_EQ(enter_request(10), 13);  // marking twice is harmless
  EXPECT_EQ(dispatch(10), 12);
  EXPECT_EQ(arena.counter(), 1u);

  // Another thread is on its own: old until it passes the safe point.
  long before = 0, after = 0;
  std::thread([&] {
    before = dispatch(20);
    enter_request(0);
    after = dispatch(20);
  }).join();
  EXPECT_EQ(before, 21);
  EXPECT_EQ(after, 22);
  EXPECT_EQ(arena.counter(), 2u);

  // A thread suture marked (its tid in the second table, at its first slot).
  long marked = 0;
  std::thread([&] {
    uint32_t tid = static_cast<uint32_t>(gettid());
    arena.suture_table()[tid & (Arena::kSlots - 1)] = tid;
    marked = dispatch(30);
  }).join();
  EXPECT_EQ(marked, 32);
}

TEST(TransitionStubs, CollidingThreadsTakeTheNextFreeSlot) {
  Arena arena;
  // Fill the tid's home slot and the next with other tids.
  uint32_t tid = static_cast<uint32_t>(gettid());
  uint32_t home = tid & (Arena::kSlots - 1);
  auto* mine = reinterpret_cast<uint32_t*>(arena.tables().switched_by_thread.value());
  mine[home] = tid + Arena::kSlots;
  mine[(home + 1) & (Arena::kSlots - 1)] = tid + 2 * Arena::kSlots;
  arena.put(0, encode_dispatcher(arena.code(0), arena.tables(), address_of(reinterpret_cast<void*>(&new_version)),
                                 address_of(reinterpret_cast<void*>(&old_version)),
                                 RemoteAddr(reinterpret_cast<uint64_t>(&arena.counter()))));
  arena.put(512, encode_safe_point_hook(arena.code(512), arena.tables(), address_of(reinterpret_cast<void*>(&request))));
  arena.seal();
  auto dispatch = reinterpret_cast<Fn>(arena.code(0).value());
  EXPECT_EQ(dispatch(1), 2);
  reinterpret_cast<Fn>(arena.code(512).value())(0);
  EXPECT_EQ(mine[(home + 2) & (Arena::kSlots - 1)], tid);
  EXPECT_EQ(dispatch(1), 3);
}

TEST(TransitionStubs, OldEntryRunsTheCopiedPrologueAndGoesBack) {
  Arena arena;
  auto* code = reinterpret_cast<const uint8_t*>(&with_prologue);
  size_t covered = covered_length("with_prologue", std::span(code, 32));
  ASSERT_GE(covered, 5u);
  RemoteAddr site = address_of(reinterpret_cast<const void*>(&with_prologue));
  arena.put(0, encode_old_entry("with_prologue", arena.code(0), site, std::span(code, covered)));
  arena.seal();
  auto copy = reinterpret_cast<long (*)(long, long)>(arena.code(0).value());
  EXPECT_EQ(copy(7, 3), with_prologue(7, 3));
}

TEST(TransitionStubs, OldEntryRefusesPositionDependentInstructions) {
  Arena arena;
  const uint8_t lea_rip[] = {0x48, 0x8d, 0x05, 0x10, 0x00, 0x00, 0x00};  // lea rax, [rip + 0x10]
  try {
    encode_old_entry("f", arena.code(0), arena.code(100), lea_rip);
    FAIL() << "accepted a rip-relative instruction";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("f: its first instructions depend on where they run"), std::string::npos)
        << e.what();
  }
  const uint8_t call[] = {0xe8, 0x00, 0x00, 0x00, 0x00};  // call rel32
  EXPECT_THROW(encode_old_entry("f", arena.code(0), arena.code(100), call), Error);
}

}  // namespace
}  // namespace suture::redirect
