// Holding and releasing a busy multi-threaded process, and running code in it,
// judged by what the process itself reports afterwards.
#include "process/tracee.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "common/error.h"
#include "common/interrupt.h"
#include "fixture-process.h"
#include "process/loaded-objects.h"
#include "process/maps.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {

using namespace std::chrono_literals;
using testing::FixtureProcess;
using testing::thread_named;

std::set<pid_t> live_threads(pid_t pid) {
  std::set<pid_t> live;
  for (pid_t tid : list_threads(pid)) {
    if (!has_ended(thread_state(pid, tid))) live.insert(tid);
  }
  return live;
}

bool same_registers(const user_regs_struct& a, const user_regs_struct& b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Waits until the process's stopped-ness is `stopped` in every live thread.
bool wait_for_state(pid_t pid, bool stopped, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    bool all = true;
    for (pid_t tid : live_threads(pid)) all &= (thread_state(pid, tid) == 'T') == stopped;
    if (all) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// The fixture must never have noticed us.
void expect_unharmed(FixtureProcess& fixture) {
  auto status = fixture.status();
  EXPECT_EQ(status["errors"], 0) << fixture.transcript();
  EXPECT_EQ(status["trap"], 0) << fixture.transcript();
}

// SIGUSR1 deliveries become visible shortly after release; wait for `want`, then
// make sure no extra one trickles in.
long settled_usr1(FixtureProcess& fixture, long want) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  long seen = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    seen = fixture.status()["usr1"];
    if (seen >= want) break;
    std::this_thread::sleep_for(10ms);
  }
  std::this_thread::sleep_for(200ms);
  return fixture.status()["usr1"];
}

TEST(Tracee, NonexistentProcessIsTargetGone) {
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status;
  waitpid(child, &status, 0);
  try {
    Tracee tracee(child);
    FAIL() << "expected TargetGone";
  } catch (const TargetGone& e) {
    EXPECT_NE(std::string(e.what()).find(fmt::format("process {} does not exist", child)), std::string::npos)
        << e.what();
  }
}

TEST(Tracee, HoldAllHoldsEveryThreadWhileThreadsComeAndGo) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  long churned_before = fixture.status()["churned"];
  std::chrono::nanoseconds slowest_hold_all{0};
  for (int round = 0; round < 30; ++round) {
    auto started = std::chrono::steady_clock::now();
    tracee.hold_all();
    slowest_hold_all = std::max(slowest_hold_all, std::chrono::steady_clock::now() - started);
    ASSERT_TRUE(tracee.all_held());
    std::set<pid_t> held;
    for (const auto& t : tracee.held_threads()) held.insert(t.tid);
    // Nothing can start or end while everything is held, so this listing is exact.
    EXPECT_EQ(held, live_threads(fixture.pid())) << "round " << round;
    EXPECT_GE(held.size(), 9u);
    for (pid_t tid : held) EXPECT_EQ(thread_state(fixture.pid(), tid), 't') << "thread " << tid;
    tracee.release_all();
    EXPECT_FALSE(tracee.all_held());
    std::this_thread::sleep_for(2ms);
  }
  auto longest = tracee.longest_hold();
  EXPECT_GT(longest.count(), 0);
  EXPECT_LT(longest, 5s);
  EXPECT_EQ(tracee.longest_hold().count(), 0);  // reported once
  std::printf("[ info ] hold_all of ~10 threads: slowest hold_all() %.3f ms, longest hold %.3f ms (test checks included)\n",
              static_cast<double>(slowest_hold_all.count()) / 1e6, static_cast<double>(longest.count()) / 1e6);
  // The process kept running, creating threads, and noticed nothing.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fixture.status()["churned"] <= churned_before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  EXPECT_GT(fixture.status()["churned"], churned_before);
  expect_unharmed(fixture);
}

TEST(Tracee, HoldOnePrefersABlockedThreadAndLeavesTheOthersAlone) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  pid_t worker = tracee.hold_one();
  auto held = tracee.held_threads();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].tid, worker);
  EXPECT_EQ(held[0].state, 'S');
  EXPECT_FALSE(tracee.all_held());
  // Only the worker is traced.
  for (pid_t tid : live_threads(fixture.pid())) {
    auto tracer = status_field(fixture.pid(), tid, "TracerPid");
    if (!tracer) continue;  // a short-lived thread of the churner, gone already
    EXPECT_EQ(*tracer, tid == worker ? std::to_string(getpid()) : "0") << "thread " << tid;
  }
  tracee.release_all();
  expect_unharmed(fixture);
}

TEST(Tracee, HoldOneAvoidsAThreadThatWouldSeeEintr) {
  FixtureProcess fixture(FIXTURE_PATH, {"epoll"});
  Tracee tracee(fixture.pid());
  for (int i = 0; i < 5; ++i) {
    pid_t worker = tracee.hold_one();
    EXPECT_NE(worker, fixture.pid()) << "the main thread waits in epoll_wait()";
    EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
    tracee.release_all();
  }
  expect_unharmed(fixture);
}

TEST(Tracee, SyscallsRunInAHeldThreadAndLeaveItsRegistersExactly) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  pid_t worker = tracee.hold_one();
  const user_regs_struct before = tracee.registers(worker);

  EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  EXPECT_EQ(tracee.syscall(SYS_gettid), worker);
  EXPECT_EQ(tracee.syscall(SYS_munmap, 1, 4096), -EINVAL);

  const uint64_t size = 3 * 4096;
  int64_t mapped = tracee.syscall(SYS_mmap, 0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                                  static_cast<uint64_t>(-1), 0);
  ASSERT_GT(mapped, 0);
  RemoteAddr at(static_cast<uint64_t>(mapped));
  auto has_mapping = [&] {
    for (const auto& m : read_maps(fixture.pid()))
      if (m.start == at && m.end == at + static_cast<int64_t>(size) && m.read && m.write) return true;
    return false;
  };
  EXPECT_TRUE(has_mapping());
  std::vector<uint8_t> bytes = {1, 2, 3, 4, 5, 6, 7, 8};
  tracee.memory().write(at + 4096, bytes);
  EXPECT_EQ(tracee.memory().read(at + 4096, bytes.size()), bytes);
  EXPECT_EQ(tracee.syscall(SYS_munmap, at.value(), size), 0);
  EXPECT_FALSE(has_mapping());

  // A block placed by find_free_near() next to the executable, mapped there.
  auto objects = loaded_objects(fixture.pid(), tracee.memory());
  auto near = objects.at(0).span;
  auto free = find_free_near(read_maps(fixture.pid()), near, 8192);
  ASSERT_TRUE(free.has_value());
  int64_t placed = tracee.syscall(SYS_mmap, free->value(), 8192, PROT_READ | PROT_EXEC,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, static_cast<uint64_t>(-1), 0);
  EXPECT_EQ(placed, static_cast<int64_t>(free->value()));
  EXPECT_EQ(tracee.syscall(SYS_munmap, free->value(), 8192), 0);

  EXPECT_TRUE(same_registers(before, tracee.registers(worker)));

  // What one system call costs, for the record.
  auto started = std::chrono::steady_clock::now();
  constexpr int kCalls = 200;
  for (int i = 0; i < kCalls; ++i) tracee.syscall(SYS_getpid);
  auto each = (std::chrono::steady_clock::now() - started) / kCalls;
  std::printf("[ info ] one remote syscall: %.1f us\n",
              static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(each).count()) / 1e3);
  EXPECT_TRUE(same_registers(before, tracee.registers(worker)));
  tracee.release_all();
  expect_unharmed(fixture);
}

double micros(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e3; }

// For the record, on a process whose threads block like a server's: what a
// hold, a remote system call and a hold of everything cost.
TEST(Tracee, CostsOnAQuietProcess) {
  FixtureProcess fixture(FIXTURE_PATH, {"quiet"});
  Tracee tracee(fixture.pid());
  constexpr int kRounds = 50;
  using std::chrono::steady_clock;
  std::vector<std::chrono::nanoseconds> hold_one, syscall, hold_all;
  for (int i = 0; i < kRounds; ++i) {
    auto t0 = steady_clock::now();
    tracee.hold_one();
    auto t1 = steady_clock::now();
    EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
    auto t2 = steady_clock::now();
    tracee.release_all();
    auto t3 = steady_clock::now();
    tracee.hold_all();
    tracee.release_all();
    auto t4 = steady_clock::now();
    hold_one.push_back((t1 - t0) + (t3 - t2));
    syscall.push_back(t2 - t1);
    hold_all.push_back(t4 - t3);
  }
  auto median = [](std::vector<std::chrono::nanoseconds> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("[ info ] quiet process, %zu threads, medians: hold_one+release %.1f us, syscall %.1f us, "
              "hold_all+release %.1f us; longest hold %.1f us\n",
              list_threads(fixture.pid()).size(), micros(median(hold_one)), micros(median(syscall)),
              micros(median(hold_all)), micros(tracee.longest_hold()));
  expect_unharmed(fixture);
}

TEST(Tracee, InterruptedReadsAndSleepsRestartAsIfNothingHappened) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  for (int round = 0; round < 10; ++round) {
    // The main thread is blocked in read() on its stdin pipe; readers in read()
    // on theirs; sleepers in nanosleep().
    pid_t worker = tracee.hold_one();
    EXPECT_EQ(tracee.held_threads().at(0).state, 'S');
    EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
    int64_t mapped = tracee.syscall(SYS_mmap, 0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
                                    static_cast<uint64_t>(-1), 0);
    ASSERT_GT(mapped, 0);
    EXPECT_EQ(tracee.syscall(SYS_munmap, static_cast<uint64_t>(mapped), 4096), 0);
    tracee.release_all();
    (void)worker;

    tracee.hold_all();
    EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
    tracee.release_all();

    std::string text = fmt::format("hello-{}", round);
    fixture.send(fmt::format("feed {} {}", round % 2, text));
    EXPECT_EQ(fixture.expect("read "), fmt::format("read {} {}", round % 2, text));
  }
  // The sleepers were held and released mid-sleep many times: they must go on
  // sleeping without an error.
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fixture.status()["sleeps"] < 4 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  auto status = fixture.status();
  EXPECT_EQ(status["reads"], 10);
  EXPECT_GE(status["sleeps"], 4);
  expect_unharmed(fixture);
}

TEST(Tracee, ASpecificBlockedReaderHeldByHoldAllReadsItsDataAfterwards) {
  FixtureProcess fixture(FIXTURE_PATH);
  pid_t reader = thread_named(fixture.pid(), "reader-1");
  ASSERT_NE(reader, 0);
  Tracee tracee(fixture.pid());
  tracee.hold_all();
  auto regs = tracee.registers(reader);
  EXPECT_EQ(regs.orig_rax, static_cast<unsigned long long>(SYS_read));  // held inside read()
  tracee.release_all();
  fixture.send("feed 1 payload");
  EXPECT_EQ(fixture.expect("read "), "read 1 payload");
  expect_unharmed(fixture);
}

TEST(Tracee, SignalsSentWhileHeldAreDeliveredOnceAfterRelease) {
  FixtureProcess fixture(FIXTURE_PATH);
  pid_t reader = thread_named(fixture.pid(), "reader-0");
  ASSERT_NE(reader, 0);
  Tracee tracee(fixture.pid());
  long expected = 0;

  // Process- and thread-directed, while everything is held and code runs.
  tracee.hold_all();
  kill(fixture.pid(), SIGUSR1);
  syscall(SYS_tgkill, fixture.pid(), reader, SIGUSR1);
  expected += 2;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  std::this_thread::sleep_for(20ms);
  tracee.release_all();
  EXPECT_EQ(settled_usr1(fixture, expected), expected);

  // To the very thread we run system calls on.
  pid_t worker = tracee.hold_one();
  syscall(SYS_tgkill, fixture.pid(), worker, SIGUSR1);
  expected += 1;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  tracee.release_all();
  EXPECT_EQ(settled_usr1(fixture, expected), expected);

  // Racing with the interrupt: some of these are dequeued by a thread on its
  // way to our stop (a signal-delivery-stop that must be given back).
  // Each must be delivered before the next is sent: two SIGUSR1 pending at
  // once are one by POSIX rules.
  for (int i = 0; i < 40; ++i) {
    kill(fixture.pid(), SIGUSR1);
    tracee.hold_all();
    tracee.syscall(SYS_getpid);
    tracee.release_all();
    ++expected;
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (fixture.status()["usr1"] < expected && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(settled_usr1(fixture, expected), expected);
  expect_unharmed(fixture);
}

TEST(Tracee, QueuedSignalsRacingWithHoldsArriveOnceWithTheirValues) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  std::atomic<bool> stop{false};
  long sent = 0, sum = 0;
  std::thread sender([&] {
    while (!stop) {
      sigval value;
      value.sival_int = static_cast<int>(sent % 1000) + 1;
      if (sigqueue(fixture.pid(), SIGRTMIN, value) == 0) {
        ++sent;
        sum += value.sival_int;
      }
      std::this_thread::sleep_for(50us);
    }
  });
  for (int round = 0; round < 60; ++round) {
    tracee.hold_all();
    EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
    tracee.release_all();
    tracee.hold_one();
    EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
    tracee.release_all();
  }
  stop = true;
  sender.join();
  ASSERT_GT(sent, 0);
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (fixture.status()["rt"] < sent && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  std::this_thread::sleep_for(100ms);
  auto status = fixture.status();
  EXPECT_EQ(status["rt"], sent);
  EXPECT_EQ(status["rtsum"], sum);
  expect_unharmed(fixture);
}

// Queues `sig` with `value` to one thread, as sigqueue() would to a process.
void queue_to_thread(pid_t pid, pid_t tid, int sig, int value) {
  siginfo_t info{};
  info.si_signo = sig;
  info.si_code = SI_QUEUE;
  info.si_pid = getpid();
  info.si_uid = getuid();
  info.si_value.sival_int = value;
  ASSERT_EQ(syscall(SYS_rt_tgsigqueueinfo, pid, tid, sig, &info), 0);
}

TEST(Tracee, SignalsTakenFromAThreadWeRunCodeOnAreGivenBackWithTheirValues) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  // Taken during a single-step (SIGSYS is never blocked by us): injected at
  // release from the step's own signal stop.
  pid_t worker = tracee.hold_one();
  queue_to_thread(fixture.pid(), worker, SIGSYS, 7);
  EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  tracee.release_all();
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fixture.status()["sys"] < 1 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
  auto status = fixture.status();
  EXPECT_EQ(status["sys"], 1);
  EXPECT_EQ(status["syssum"], 7);

  // Two taken, the last during a call that we then interrupt: the thread ends
  // in an interrupt stop, where nothing can be injected, so both are queued
  // again, values and all.
  worker = tracee.hold_one();
  queue_to_thread(fixture.pid(), worker, SIGSYS, 11);
  EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  queue_to_thread(fixture.pid(), worker, SIGSYS, 13);
  EXPECT_THROW(tracee.call(RemoteAddr(fixture.value("spin")), {0}, 100ms), Error);
  tracee.release_all();
  deadline = std::chrono::steady_clock::now() + 10s;
  while (fixture.status()["sys"] < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
  std::this_thread::sleep_for(100ms);
  status = fixture.status();
  EXPECT_EQ(status["sys"], 3);
  EXPECT_EQ(status["syssum"], 31);
  expect_unharmed(fixture);
}

TEST(Tracee, AStoppedProcessStaysStoppedAndAStopSentWhileHeldTakesEffect) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());

  kill(fixture.pid(), SIGSTOP);
  ASSERT_TRUE(wait_for_state(fixture.pid(), true));
  tracee.hold_one();
  EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  tracee.release_all();
  tracee.hold_all();
  EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  tracee.release_all();
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(wait_for_state(fixture.pid(), true, 1s)) << "the group stop must survive our visit";
  kill(fixture.pid(), SIGCONT);
  ASSERT_TRUE(wait_for_state(fixture.pid(), false));
  expect_unharmed(fixture);

  tracee.hold_all();
  kill(fixture.pid(), SIGSTOP);
  EXPECT_EQ(tracee.syscall(SYS_getpid), fixture.pid());
  tracee.release_all();
  EXPECT_TRUE(wait_for_state(fixture.pid(), true)) << "a SIGSTOP sent while held must still stop the process";
  kill(fixture.pid(), SIGCONT);
  ASSERT_TRUE(wait_for_state(fixture.pid(), false));
  expect_unharmed(fixture);
}

TEST(Tracee, CallRunsAFunctionAndRestoresTheThread) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  RemoteAddr add(fixture.value("add"));
  pid_t worker = tracee.hold_one();
  const user_regs_struct before = tracee.registers(worker);
  EXPECT_EQ(tracee.call(add, {1, 2, 3}), 123u);
  EXPECT_EQ(tracee.call(add, {7, 0, 5}), 705u);
  EXPECT_TRUE(same_registers(before, tracee.registers(worker)));

  // A function that never returns: interrupted, thread restored.
  try {
    tracee.call(RemoteAddr(fixture.value("spin")), {0}, 200ms);
    FAIL() << "expected a timeout";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did not return"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(same_registers(before, tracee.registers(worker)));

  // A function that crashes: the fault is ours, the process survives.
  EXPECT_THROW(tracee.call(RemoteAddr(0x10), {}), Error);
  EXPECT_TRUE(same_registers(before, tracee.registers(worker)));
  EXPECT_EQ(tracee.call(add, {4, 5, 6}), 456u);
  tracee.release_all();

  tracee.hold_all();
  EXPECT_EQ(tracee.call(add, {9, 9, 9}), 999u);
  tracee.release_all();
  expect_unharmed(fixture);
}

TEST(Tracee, AnInterruptRequestLetsEverythingGo) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  tracee.hold_one();
  install_interrupt_handlers();
  raise(SIGINT);
  EXPECT_THROW(tracee.hold_all(), Interrupted);
  clear_interrupt();
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  EXPECT_TRUE(tracee.held_threads().empty());
  for (pid_t tid : live_threads(fixture.pid())) {
    auto tracer = status_field(fixture.pid(), tid, "TracerPid");
    if (tracer) {
      EXPECT_EQ(*tracer, "0") << "thread " << tid;
    }
  }
  expect_unharmed(fixture);
}

TEST(Tracee, ATargetKilledWhileHeldIsTargetGoneWithoutHanging) {
  auto started = std::chrono::steady_clock::now();
  {
    FixtureProcess fixture(FIXTURE_PATH);
    {
      Tracee tracee(fixture.pid());
      tracee.hold_all();
      kill(fixture.pid(), SIGKILL);
      EXPECT_THROW(tracee.syscall(SYS_getpid), TargetGone);
    }
    EXPECT_TRUE(WIFSIGNALED(fixture.reap()));
  }
  {
    FixtureProcess fixture(FIXTURE_PATH);
    {
      Tracee tracee(fixture.pid());
      tracee.hold_one();
      kill(fixture.pid(), SIGKILL);
      EXPECT_THROW(tracee.syscall(SYS_getpid), TargetGone);
      EXPECT_THROW(tracee.hold_all(), TargetGone);
    }
    EXPECT_TRUE(WIFSIGNALED(fixture.reap()));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 30s);
}

// An attached controller sleeps in poll() until a thread stops or another
// thread of suture wakes it, not until its wait ends.
TEST(Tracee, PollSleepsUntilAStopOrItsWaker) {
  FixtureProcess fixture(FIXTURE_PATH);
  using Clock = std::chrono::steady_clock;
  std::string failure;
  Clock::duration woken{}, stopped{};
  size_t handled_when_woken = 99, handled_at_stop = 0;
  // Attached mode ends with the thread that attached.
  std::thread controller([&] {
    try {
      Tracee tracee(fixture.pid());
      tracee.attach_running();
      while (tracee.poll(0us) > 0) {
      }
      // Stops of the fixture's own (threads come and go) end a poll() too,
      // with something handled; only the waker or the deadline end it with 0.
      auto wake = tracee.poll_waker();
      std::atomic<Clock::rep> fired{0};
      std::thread waker([&] {
        std::this_thread::sleep_for(50ms);
        fired = Clock::now().time_since_epoch().count();
        wake();
      });
      auto give_up = Clock::now() + 10s;
      while ((handled_when_woken = tracee.poll(5s)) > 0 && Clock::now() < give_up) {
      }
      woken = Clock::now() - Clock::time_point(Clock::duration(fired.load()));
      waker.join();

      auto start = Clock::now();
      kill(fixture.pid(), SIGUSR1);  // a signal stop, which poll() delivers
      while (handled_at_stop == 0 && Clock::now() - start < 5s) handled_at_stop += tracee.poll(5s);
      stopped = Clock::now() - start;
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  controller.join();
  ASSERT_EQ(failure, "");
  EXPECT_EQ(handled_when_woken, 0u);
  EXPECT_LT(woken, 2s);
  EXPECT_GE(handled_at_stop, 1u);
  EXPECT_LT(stopped, 2s);
  EXPECT_EQ(settled_usr1(fixture, 1), 1);
  expect_unharmed(fixture);
}

// Two threads stop again the moment they are let go (a signal is always
// pending for them): one poll() serves each pending stop once and returns, as
// poll(0) is meant to. Served one stop at a time until none was pending, it
// did not return while the storm lasted, serving the same threads again and
// again, and a caller that meant to look once could not get on with its work.
TEST(Tracee, PollServesEachThreadOnceARound) {
  FixtureProcess fixture(FIXTURE_PATH, {"quiet"});
  pid_t readers[] = {thread_named(fixture.pid(), "reader-0"), thread_named(fixture.pid(), "reader-1")};
  ASSERT_NE(readers[0], 0);
  ASSERT_NE(readers[1], 0);
  size_t threads = list_threads(fixture.pid()).size();
  std::string failure;
  size_t most = 0, total = 0, polls = 0;
  std::atomic<bool> attached{false}, done{false};
  std::thread controller([&] {
    try {
      Tracee tracee(fixture.pid());
      tracee.attach_running();
      attached = true;
      auto until = std::chrono::steady_clock::now() + 300ms;
      while (std::chrono::steady_clock::now() < until) {
        size_t handled = tracee.poll(0us);
        most = std::max(most, handled);
        total += handled;
        ++polls;
      }
      done = true;
      while (tracee.poll(10ms) > 0) {  // the last signals in flight
      }
    } catch (const std::exception& e) {
      failure = e.what();
    }
    done = true;
  });
  // SA_RESTART handlers: a reader's read() goes on after each one.
  while (!attached && !done) std::this_thread::sleep_for(1ms);
  while (!done)
    for (pid_t reader : readers) syscall(SYS_tgkill, fixture.pid(), reader, SIGUSR1);
  controller.join();
  ASSERT_EQ(failure, "");
  EXPECT_GT(total, 20u) << "the signals made no storm of stops";
  EXPECT_LE(most, threads) << "one poll(0) served " << most << " stops of " << threads << " threads in " << polls
                           << " polls";
  EXPECT_GT(fixture.status()["usr1"], 0);
  expect_unharmed(fixture);
}

// Whether this thread runs SCHED_FIFO (suture's raised priority).
bool raised_now() { return (sched_getscheduler(0) & ~SCHED_RESET_ON_FORK) == SCHED_FIFO; }

// Whether a thread of this process may take SCHED_FIFO (CAP_SYS_NICE).
bool may_raise() {
  bool may = false;
  std::thread([&] {
    sched_param param{};
    param.sched_priority = 1;
    may = sched_setscheduler(0, SCHED_FIFO, &param) == 0;
  }).join();
  return may;
}

// Mid-switch the controller's own work runs at the priority it started with,
// and it is raised only while a thread waits for it: a stop that comes while
// it works (no poll()) raises it through the StopWatcher, and the first
// round that finds no stop lowers it again. Without expect_traps() a stop
// raises nobody until the controller looks.
TEST(Tracee, AStopWhileTheControllerWorksRaisesItOnlyWhileExpectingTraps) {
  if (!may_raise()) GTEST_SKIP() << "no CAP_SYS_NICE: suture never raises itself";
  FixtureProcess fixture(FIXTURE_PATH, {"quiet"});
  pid_t reader = thread_named(fixture.pid(), "reader-0");
  ASSERT_NE(reader, 0);
  std::string failure;
  bool raised_without = true, raised_while_expecting = false, raised_after_empty_round = true;
  bool raised_before_stop = true;
  // Until `raised_now()` or `span` has passed, working all the while.
  auto work_until_raised = [](std::chrono::milliseconds span) {
    auto until = std::chrono::steady_clock::now() + span;
    while (std::chrono::steady_clock::now() < until)
      if (raised_now()) return true;
    return false;
  };
  auto serve_all = [](Tracee& tracee) {
    size_t handled = 0;
    for (auto until = std::chrono::steady_clock::now() + 5s; handled == 0 && std::chrono::steady_clock::now() < until;)
      handled += tracee.poll(10ms);
    while (tracee.poll(0us) > 0) {
    }
    return handled;
  };
  // As switch_entries_live() does: no other thread of ours takes a SIGCHLD
  // that the controller or its watcher waits for.
  std::optional<SigchldBlocked> blocked(std::in_place);
  std::thread controller([&] {
    try {
      Tracee tracee(fixture.pid());
      tracee.attach_running();
      while (tracee.poll(0us) > 0) {
      }
      syscall(SYS_tgkill, fixture.pid(), reader, SIGUSR1);  // a signal stop, for us to deliver
      raised_without = work_until_raised(200ms);
      if (serve_all(tracee) == 0) throw std::runtime_error("the first stop never came");

      tracee.expect_traps(true);
      raised_before_stop = raised_now();
      syscall(SYS_tgkill, fixture.pid(), reader, SIGUSR1);
      raised_while_expecting = work_until_raised(5s);
      if (serve_all(tracee) == 0) throw std::runtime_error("the second stop never came");
      raised_after_empty_round = raised_now();
      tracee.expect_traps(false);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  controller.join();
  blocked.reset();
  ASSERT_EQ(failure, "");
  EXPECT_FALSE(raised_without);
  EXPECT_FALSE(raised_before_stop);
  EXPECT_TRUE(raised_while_expecting);
  EXPECT_FALSE(raised_after_empty_round);
  EXPECT_EQ(settled_usr1(fixture, 2), 2);
  expect_unharmed(fixture);
}

}  // namespace
}  // namespace suture::process
