// The target of the process-control tests: a program with threads in every
// state a real server has (blocked in read() on a pipe, in nanosleep(), in a
// futex, spinning, creating and joining threads), which reports on its stdout
// anything that ptrace must never let it notice: a read() or nanosleep() that
// failed with EINTR, a SIGTRAP, a signal delivered twice.
//
// stdin commands, one per line:
//   status             -> "status usr1=N trap=N errors=N reads=N sleeps=N churned=N rt=N rtsum=N sys=N syssum=N"
//   feed K TEXT        -> writes TEXT into reader K's pipe; reader K prints "read K TEXT"
//   quit               -> exits 0
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

extern "C" long* fixture_tls_address();

namespace {

std::atomic<long> g_usr1{0}, g_trap{0}, g_errors{0}, g_reads{0}, g_sleeps{0}, g_churned{0}, g_rt{0}, g_rt_sum{0}, g_sys{0},
    g_sys_sum{0};
int g_pipes[2][2];
pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t g_idle_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t g_idle = PTHREAD_COND_INITIALIZER;
volatile long g_sink;
std::atomic<int> g_started{0};  // threads that have named themselves

void say(const std::string& line) {
  pthread_mutex_lock(&g_out);
  std::string text = line + "\n";
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(1, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      ++g_errors;
      continue;
    }
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  pthread_mutex_unlock(&g_out);
}

void on_usr1(int) { ++g_usr1; }
void on_trap(int) { ++g_trap; }
// Real-time signals queue rather than merge, and carry a value: each one sent
// must arrive exactly once, with its value.
void on_rt(int, siginfo_t* info, void*) {
  ++g_rt;
  g_rt_sum += info->si_value.sival_int;
}
// SIGSYS is one of the signals the tracer never blocks; tests queue it by hand.
void on_sys(int, siginfo_t* info, void*) {
  ++g_sys;
  g_sys_sum += info->si_value.sival_int;
}

void block_usr1() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGRTMIN);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void* reader(void* arg) {
  long k = reinterpret_cast<long>(arg);
  pthread_setname_np(pthread_self(), ("reader-" + std::to_string(k)).c_str());
  ++g_started;
  char buffer[256];
  for (;;) {
    ssize_t n = read(g_pipes[k][0], buffer, sizeof buffer);
    if (n < 0) {
      ++g_errors;
      say("reader " + std::to_string(k) + " error " + strerror(errno));
      continue;
    }
    if (n == 0) return nullptr;
    ++g_reads;
    say("read " + std::to_string(k) + " " + std::string(buffer, static_cast<size_t>(n)));
  }
}

void* sleeper(void* arg) {
  long k = reinterpret_cast<long>(arg);
  pthread_setname_np(pthread_self(), ("sleeper-" + std::to_string(k)).c_str());
  ++g_started;
  block_usr1();  // a handler legitimately cuts nanosleep() short; we test ptrace, not that
  for (;;) {
    timespec ts{0, 20'000'000};
    if (nanosleep(&ts, nullptr) != 0) {
      ++g_errors;
      say(std::string("sleeper error ") + strerror(errno));
    }
    ++g_sleeps;
  }
}

void* spinner(void* arg) {
  long k = reinterpret_cast<long>(arg);
  pthread_setname_np(pthread_self(), ("spinner-" + std::to_string(k)).c_str());
  ++g_started;
  for (;;) g_sink = g_sink + 1;
}

void* waiter(void*) {
  pthread_setname_np(pthread_self(), "waiter");
  ++g_started;
  pthread_mutex_lock(&g_idle_lock);
  for (;;) pthread_cond_wait(&g_idle, &g_idle_lock);  // never signalled: a futex wait
}

void* churn_child(void*) {
  timespec ts{0, 200'000};
  nanosleep(&ts, nullptr);
  return nullptr;
}

void* churner(void*) {
  pthread_setname_np(pthread_self(), "churner");
  ++g_started;
  for (;;) {
    pthread_t child;
    if (pthread_create(&child, nullptr, churn_child, nullptr) == 0) {
      pthread_join(child, nullptr);
      ++g_churned;
    }
  }
}

void start(void* (*body)(void*), long arg) {
  pthread_t thread;
  if (pthread_create(&thread, nullptr, body, reinterpret_cast<void*>(arg)) != 0) std::abort();
  pthread_detach(thread);
}

void command(const std::string& line) {
  if (line == "status") {
    char text[256];
    snprintf(text, sizeof text, "status usr1=%ld trap=%ld errors=%ld reads=%ld sleeps=%ld churned=%ld rt=%ld rtsum=%ld sys=%ld syssum=%ld",
             g_usr1.load(), g_trap.load(), g_errors.load(), g_reads.load(), g_sleeps.load(), g_churned.load(),
             g_rt.load(), g_rt_sum.load(), g_sys.load(), g_sys_sum.load());
    say(text);
  } else if (line.rfind("feed ", 0) == 0 && line.size() > 7) {
    int k = line[5] - '0';
    std::string text = line.substr(7);
    if (k >= 0 && k < 2 && write(g_pipes[k][1], text.data(), text.size()) < 0) say("feed failed");
  } else if (line == "quit") {
    std::exit(0);
  } else {
    say("unknown " + line);
  }
}

}  // namespace

// Called by the tests through Tracee::call().
extern "C" __attribute__((noinline, used)) long fixture_add(long a, long b, long c) { return a * 100 + b * 10 + c; }

extern "C" __attribute__((noinline, used)) long fixture_spin_forever(long) {
  for (;;) g_sink = g_sink + 1;
}

// Never called: the tests write into its code.
extern "C" __attribute__((noinline, used)) long fixture_never_called(long a) { return a * 7 + g_sink; }

int main(int argc, char** argv) {
  // "quiet": only threads that block, for measuring what ptrace itself costs.
  // "epoll": the main thread waits in epoll_wait(), which the kernel cuts short
  // with EINTR whenever the thread is stopped and resumed.
  bool quiet = false, use_epoll = false;
  for (int i = 1; i < argc; ++i) {
    quiet |= std::strcmp(argv[i], "quiet") == 0;
    use_epoll |= std::strcmp(argv[i], "epoll") == 0;
  }
  struct sigaction action {};
  action.sa_handler = on_usr1;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR1, &action, nullptr);
  action.sa_handler = on_trap;
  sigaction(SIGTRAP, &action, nullptr);
  struct sigaction rt {};
  rt.sa_sigaction = on_rt;
  rt.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&rt.sa_mask);
  sigaction(SIGRTMIN, &rt, nullptr);
  rt.sa_sigaction = on_sys;
  sigaction(SIGSYS, &rt, nullptr);

  for (auto& p : g_pipes)
    if (pipe(p) != 0) return 1;
  for (long k = 0; k < 2; ++k) start(reader, k);
  for (long k = 0; k < 2; ++k) start(sleeper, k);
  if (!quiet)
    for (long k = 0; k < 2; ++k) start(spinner, k);
  start(waiter, 0);
  if (!quiet) start(churner, 0);
  const int threads = quiet ? 5 : 8;
  while (g_started < threads) {
    timespec ts{0, 1'000'000};
    nanosleep(&ts, nullptr);
  }

  char ready[512];
  snprintf(ready, sizeof ready, "ready pid=%d add=%#lx spin=%#lx never=%#lx tls=%#lx", getpid(),
           reinterpret_cast<unsigned long>(&fixture_add), reinterpret_cast<unsigned long>(&fixture_spin_forever),
           reinterpret_cast<unsigned long>(&fixture_never_called),
           reinterpret_cast<unsigned long>(fixture_tls_address()));
  say(ready);

  int epoll = -1;
  if (use_epoll) {
    epoll = epoll_create1(EPOLL_CLOEXEC);
    epoll_event event{};
    event.events = EPOLLIN;
    if (epoll < 0 || epoll_ctl(epoll, EPOLL_CTL_ADD, 0, &event) != 0) return 1;
  }

  // Raw read(): stdio would hide an EINTR from us.
  std::string pending;
  char buffer[512];
  for (;;) {
    if (use_epoll) {
      epoll_event event{};
      if (epoll_wait(epoll, &event, 1, -1) < 0) {
        ++g_errors;
        say(std::string("epoll error ") + strerror(errno));
        continue;
      }
    }
    ssize_t n = read(0, buffer, sizeof buffer);
    if (n < 0) {
      ++g_errors;
      say(std::string("stdin error ") + strerror(errno));
      continue;
    }
    if (n == 0) return 0;
    pending.append(buffer, static_cast<size_t>(n));
    for (size_t end; (end = pending.find('\n')) != std::string::npos;) {
      command(pending.substr(0, end));
      pending.erase(0, end + 1);
    }
  }
}
