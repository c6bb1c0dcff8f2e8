// Suture's helper thread in a busy target, and the divert it is created with,
// judged by what the target reports afterwards: no read() or nanosleep() cut
// short, no stray SIGTRAP, nothing left behind.
#include "process/helper-thread.h"

#include <linux/membarrier.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"
#include "fixture-process.h"
#include "process/maps.h"
#include "process/proc-files.h"
#include "process/syscall-server.h"
#include "process/tracee.h"

namespace suture::process {
namespace {

using namespace std::chrono_literals;
using testing::FixtureProcess;
using testing::thread_named;

bool alive(pid_t pid, pid_t tid) { return !has_ended(thread_state(pid, tid)); }

// The helper ends when its HelperThread does, or soon after.
bool ends_soon(pid_t pid, pid_t tid) {
  auto deadline = std::chrono::steady_clock::now() + 2s;
  while (alive(pid, tid) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  return !alive(pid, tid);
}

// The last page of every executable mapping: where the trampoline goes.
std::vector<std::vector<uint8_t>> code_tails(pid_t pid, const Memory& memory) {
  std::vector<std::vector<uint8_t>> tails;
  for (const Mapping& m : read_maps(pid))
    if (m.exec && !m.path.empty() && m.path[0] == '/') tails.push_back(memory.read(m.end - 4096, 4096));
  return tails;
}

// The fixture must never have noticed us, and its sleepers sleep on.
void expect_unharmed(FixtureProcess& fixture) {
  auto sleeps = fixture.status()["sleeps"];
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (fixture.status()["sleeps"] < sleeps + 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_GE(fixture.status()["sleeps"], sleeps + 3);
  auto status = fixture.status();
  EXPECT_EQ(status["errors"], 0) << fixture.transcript();
  EXPECT_EQ(status["trap"], 0) << fixture.transcript();
}

TEST(HelperThread, RunsSystemCallsOnAThreadOfItsOwnAndLeavesNothingBehind) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  auto tails_before = code_tails(fixture.pid(), tracee.memory());
  for (int round = 0; round < 5; ++round) {
    pid_t helper_tid = 0;
    {
      HelperThread helper(tracee);
      ASSERT_EQ(helper.why_not(), "");
      helper_tid = helper.tid();
      ASSERT_NE(helper_tid, 0);
      EXPECT_EQ(tracee.helper(), helper_tid);
      EXPECT_EQ(thread_name(fixture.pid(), helper_tid), "suture-helper");
      // Every signal blocked (the kernel never lets SIGKILL and SIGSTOP be).
      auto blocked = status_field(fixture.pid(), helper_tid, "SigBlk");
      ASSERT_TRUE(blocked);
      uint64_t unblockable = (1ULL << (SIGKILL - 1)) | (1ULL << (SIGSTOP - 1));
      EXPECT_EQ(std::strtoull(blocked->c_str(), nullptr, 16) | unblockable, ~0ULL) << *blocked;
      // System calls run on it; function calls never do.
      EXPECT_EQ(tracee.hold_one(), helper_tid);
      EXPECT_EQ(tracee.syscall(SYS_gettid), helper_tid);
      EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
      tracee.release_all();
      pid_t for_calls = tracee.hold_one(Tracee::Work::calls);
      EXPECT_NE(for_calls, helper_tid);
      tracee.release_all();
      // Its holds are not the target's: nothing else was held but the creator,
      // briefly, and the thread for calls.
      EXPECT_LT(tracee.longest_hold(), 1s);
      size_t helpers = 0;
      for (pid_t tid : list_threads(fixture.pid())) helpers += thread_name(fixture.pid(), tid) == "suture-helper";
      EXPECT_EQ(helpers, 1u);
    }
    EXPECT_EQ(tracee.helper(), 0);
    EXPECT_TRUE(ends_soon(fixture.pid(), helper_tid)) << "the helper thread outlived its HelperThread";
    std::string text = fmt::format("after-helper-{}", round);
    fixture.send(fmt::format("feed {} {}", round % 2, text));
    EXPECT_EQ(fixture.expect("read "), fmt::format("read {} {}", round % 2, text));
  }
  // The padding the trampoline used has its zeros back.
  EXPECT_EQ(code_tails(fixture.pid(), tracee.memory()), tails_before);
  expect_unharmed(fixture);
}

size_t helper_pages(pid_t pid) {
  size_t n = 0;
  for (const Mapping& m : read_maps(pid)) n += m.path.rfind("/memfd:suture-helper", 0) == 0;
  return n;
}

// System calls run on the helper with nothing of the process traced: core
// syncs get the target's result (EPERM before it registered for them, 0
// after), a thousand in a row all answered; six arguments reach the kernel
// (an mmap that shows in the maps, then its munmap); Tracee::brief_syscall
// goes there; and the page goes with the helper.
TEST(HelperThread, ServesSystemCallsWithoutAStopAndTakesItsPageAlong) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  auto tails_before = code_tails(fixture.pid(), tracee.memory());
  pid_t helper_tid = 0;
  {
    HelperThread helper(tracee);
    ASSERT_EQ(helper.why_not(), "");
    ASSERT_NE(helper.server(), nullptr) << helper.why_not_served();
    EXPECT_EQ(tracee.syscall_server(), helper.server());
    helper_tid = helper.tid();
    EXPECT_EQ(helper_pages(fixture.pid()), 1u);
    tracee.release_all();
    for (pid_t tid : list_threads(fixture.pid())) {
      auto tracer = status_field(fixture.pid(), tid, "TracerPid");  // nullopt: a thread that ended meanwhile
      if (tracer) {
        EXPECT_EQ(*tracer, "0") << "thread " << tid;
      }
    }
    const SyscallServer& server = *helper.server();
    const std::array<uint64_t, 6> sync_cores{MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0, 0, 0, 0};
    EXPECT_EQ(server.run(SYS_membarrier, sync_cores, 1s), -EPERM);
    tracee.hold_one();
    ASSERT_EQ(tracee.syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0), 0);
    tracee.release_all();
    for (int i = 0; i < 1000; ++i) ASSERT_EQ(server.run(SYS_membarrier, sync_cores, 1s), 0) << "sync " << i;
    constexpr uint64_t kHint = 0x5ace0000000;
    auto mapped = server.run(SYS_mmap, {kHint, 3 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                        static_cast<uint64_t>(-1), 0}, 1s);
    ASSERT_EQ(mapped, static_cast<int64_t>(kHint));
    auto maps = read_maps(fixture.pid());
    auto it = std::find_if(maps.begin(), maps.end(), [&](const Mapping& m) { return m.start.value() == kHint; });
    ASSERT_NE(it, maps.end());
    EXPECT_EQ(it->end.value(), kHint + 3 * 4096);
    EXPECT_TRUE(it->read && !it->write && !it->exec);
    EXPECT_EQ(server.run(SYS_munmap, {kHint, 3 * 4096, 0, 0, 0, 0}, 1s), 0);
    maps = read_maps(fixture.pid());
    EXPECT_TRUE(std::none_of(maps.begin(), maps.end(), [&](const Mapping& m) { return m.start.value() == kHint; }));
    // Tracee::brief_syscall goes to it with nothing held.
    uint32_t answered = server.answered();
    EXPECT_EQ(tracee.brief_syscall(SYS_gettid), helper_tid);
    EXPECT_EQ(server.answered(), answered + 1);
    // A system call through ptrace meanwhile leaves it serving.
    EXPECT_EQ(tracee.hold_one(), helper_tid);
    EXPECT_EQ(tracee.syscall(SYS_gettid), helper_tid);
    tracee.release_all();
    EXPECT_EQ(server.run(SYS_membarrier, sync_cores, 1s), 0);
  }
  EXPECT_EQ(tracee.syscall_server(), nullptr);
  EXPECT_EQ(helper_pages(fixture.pid()), 0u);
  EXPECT_TRUE(ends_soon(fixture.pid(), helper_tid));
  EXPECT_EQ(code_tails(fixture.pid(), tracee.memory()), tails_before);
  expect_unharmed(fixture);
}

// The lowest descriptor number the process has free.
int lowest_free_fd(pid_t pid) {
  std::set<int> open;
  for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid)))
    open.insert(std::stoi(entry.path().filename().string()));
  int fd = 0;
  while (open.contains(fd)) ++fd;
  return fd;
}

// A helper whose page cannot be made (no descriptor left for its memfd) still
// runs system calls, through ptrace, says why it does not serve them, closes
// nothing of the target's and leaves nothing behind.
TEST(HelperThread, WithoutItsPageRunsSystemCallsThroughPtraceAndSaysWhy) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  auto tails_before = code_tails(fixture.pid(), tracee.memory());
  const int free_fd = lowest_free_fd(fixture.pid());
  rlimit before{};
  ASSERT_EQ(::prlimit(fixture.pid(), RLIMIT_NOFILE, nullptr, &before), 0);
  rlimit none{static_cast<rlim_t>(free_fd), before.rlim_max};  // the soft limit: raising it back needs no privilege
  ASSERT_EQ(::prlimit(fixture.pid(), RLIMIT_NOFILE, &none, nullptr), 0);
  pid_t helper_tid = 0;
  {
    HelperThread helper(tracee);
    ASSERT_EQ(helper.why_not(), "");
    helper_tid = helper.tid();
    EXPECT_EQ(helper.server(), nullptr);
    EXPECT_EQ(tracee.syscall_server(), nullptr);
    EXPECT_NE(helper.why_not_served().find("memfd_create"), std::string::npos) << helper.why_not_served();
    EXPECT_NE(helper.why_not_served().find(errno_text(EMFILE)), std::string::npos) << helper.why_not_served();
    EXPECT_EQ(thread_name(fixture.pid(), helper_tid), "suture-helper");
    EXPECT_EQ(helper_pages(fixture.pid()), 0u);
    EXPECT_EQ(tracee.brief_syscall(SYS_gettid), helper_tid);
    EXPECT_EQ(tracee.brief_syscall(SYS_getpid), fixture.pid());
  }
  ASSERT_EQ(::prlimit(fixture.pid(), RLIMIT_NOFILE, &before, nullptr), 0);
  EXPECT_EQ(lowest_free_fd(fixture.pid()), free_fd);
  EXPECT_TRUE(ends_soon(fixture.pid(), helper_tid));
  EXPECT_EQ(code_tails(fixture.pid(), tracee.memory()), tails_before);
  expect_unharmed(fixture);
}

// A process that dies while the helper makes a call for suture: the wait ends
// as the helper goes, with TargetGone, not after the call's 10 s timeout with
// an error that blames the helper.
TEST(HelperThread, ACallThatOutlivesItsProcessEndsAsTargetGone) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  HelperThread helper(tracee);
  ASSERT_NE(helper.server(), nullptr) << helper.why_not() << helper.why_not_served();
  tracee.release_all();
  std::thread killer([&] {
    std::this_thread::sleep_for(100ms);
    ::kill(fixture.pid(), SIGKILL);
  });
  // The helper blocks every signal: pause() returns only when the process ends.
  EXPECT_THROW(tracee.brief_syscall(SYS_pause), TargetGone);
  killer.join();
}

// Tracee::divert on threads stopped in every state the fixture has: inside
// read() (restarted with -ERESTARTSYS), nanosleep() (-ERESTART_RESTARTBLOCK),
// a futex wait, and user code (a spinner): each goes through a stub that only
// jumps back, many times, and must never notice.
TEST(HelperThread, DivertedThreadsResumeExactlyWhereTheyWouldHave) {
  FixtureProcess fixture(FIXTURE_PATH);
  std::string failure, at;
  // Attached mode ends with the thread that attached.
  std::thread controller([&] {
    try {
      Tracee tracee(fixture.pid());
      tracee.attach_running();
      tracee.hold_one();
      int64_t page = tracee.syscall(SYS_mmap, 0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS,
                                    static_cast<uint64_t>(-1), 0);
      tracee.release_all();
      if (page < 0) throw Error("mmap failed");
      // One stub per divert, each with its own slot: a thread still on its way
      // through a stub must not find the next thread's resume address there.
      // Each: jmp [rip+2]; 2 bytes of int3; the 8-byte slot.
      RemoteAddr next(static_cast<uint64_t>(page));
      auto divert_through_a_stub = [&](pid_t tid) {
        RemoteAddr stub = next;
        next += 16;
        tracee.memory().write(stub, std::vector<uint8_t>{0xff, 0x25, 0x02, 0, 0, 0, 0xcc, 0xcc});
        tracee.hold(tid);
        tracee.divert(tid, stub, stub + 8);
        std::this_thread::sleep_for(2ms);
        tracee.poll(0us);
      };
      for (const char* name : {"reader-0", "sleeper-0", "waiter", "spinner-0"}) {
        pid_t tid = thread_named(fixture.pid(), name);
        if (tid == 0) throw Error(fmt::format("no thread {}", name));
        for (int i = 0; i < 40; ++i) {
          at = fmt::format("{} round {}", name, i);
          divert_through_a_stub(tid);
        }
      }
      // The main thread too: it sits in read() on stdin.
      for (int i = 0; i < 40; ++i) {
        at = fmt::format("main thread round {}", i);
        divert_through_a_stub(fixture.pid());
      }
      std::this_thread::sleep_for(20ms);
      while (tracee.poll(0us) > 0) {
      }
    } catch (const std::exception& e) {
      failure = fmt::format("{} (at {})", e.what(), at);
    }
  });
  controller.join();
  ASSERT_EQ(failure, "") << fixture.transcript();
  fixture.send("feed 0 after-divert");
  EXPECT_EQ(fixture.expect("read "), "read 0 after-divert");
  expect_unharmed(fixture);
}

}  // namespace
}  // namespace suture::process
