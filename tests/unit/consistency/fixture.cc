// The target of the consistency tests: threads parked in known functions.
//
//   parked-K  parked_main -> busy, blocked in read() on a pipe nobody writes
//             (even K) or in nanosleep() (odd K); it never leaves busy.
//   deep      deep_main -> recurse x kDepth -> bottom, asleep in nanosleep();
//             with --deep N there are N of them: deep, deep-1, ... deep-(N-1).
//   lingerer  lingerer_main -> idle, blocked in read() on a command pipe; on
//             "linger MS" it runs linger(), which stays for MS ms and returns.
//   hammer-K  with --hammer N: calls answer() back to back and checks each
//             result: 2*s+1 (answer) or 2*s+7 (answer_new), nothing else.
//             answer() keeps callee-saved registers, so its first five bytes
//             are several instructions (pushes).
//   faulter   on "fault MODE": calls entry_fault(nullptr), whose second
//             instruction, inside the bytes a jump at its entry covers, takes
//             SIGSEGV; the handler says "faulted" and never returns (spins,
//             or sleeps; spin-altstack spins on an alternate signal stack).
//             So a signal frame returns into those bytes for good.
//   spinner   on "spin": runs outer_spin -> inner_spin, which spins for good
//             without a system call (a thread always on a CPU or waiting for
//             one, with an old function below its top frame).
//   main      reads commands on stdin: "ping" (answers "pong"), "linger MS",
//             "counts" (answers "counts OLD NEW BAD": hammer results so far),
//             "catch-sigtrap" (installs a SIGTRAP handler; answers "caught"),
//             "fault spin|sleep|spin-altstack" (see faulter), "spin".
//             With --hammers-block-sigtrap 1 the hammers block SIGTRAP.
//
// It prints "fn NAME ADDRESS SIZE" for the functions the tests look for (from
// its own dynamic symbol table: it is linked with -rdynamic), "thread NAME TID"
// for every thread, then "ready". Built with -O2 -fomit-frame-pointer, so only
// CFI can unwind it.
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr int kDepth = 40;

volatile bool g_forever = true;  // keeps the compiler from proving loops endless
int g_never_written[2];          // pipe the parked readers block on
int g_commands[2];               // pipe main -> lingerer
std::atomic<int> g_started{0};
std::atomic<long> g_old{0}, g_new{0}, g_bad{0};
bool g_hammers_block_sigtrap = false;

void say(const std::string& line) {
  std::string text = line + "\n";
  ssize_t n = ::write(1, text.data(), text.size());
  (void)n;
}

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1'000'000};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

int g_fault_mode = 0;  // 1 spin, 2 sleep, 3 spin on an alternate signal stack

void on_fault(int, siginfo_t*, void*) {
  say("faulted");
  while (g_forever) {
    if (g_fault_mode == 2) sleep_ms(1000);
    asm volatile("" ::: "memory");
  }
}

struct Parked {
  int index;
  pid_t tid;
};

}  // namespace

// The functions the tests look for: not inlined, not cloned, not split; with C
// names so the fixture can look itself up with dlsym.
extern "C" {

__attribute__((noinline, noclone)) void busy(int fd) {
  while (g_forever) {
    if (fd >= 0) {
      char c;
      ssize_t n = ::read(fd, &c, 1);
      (void)n;
    } else {
      sleep_ms(1000);
    }
    asm volatile("" ::: "memory");
  }
}

__attribute__((noinline, noclone)) int bottom() {
  while (g_forever) {
    sleep_ms(1000);
    asm volatile("" ::: "memory");
  }
  return 0;
}

__attribute__((noinline, noclone)) int recurse(int n) {
  int r = n == 0 ? bottom() : recurse(n - 1);
  asm volatile("" : "+r"(r));  // no tail call, no accumulator loop
  return r + 1;
}

__attribute__((noinline, noclone)) void linger(long ms) {
  say("lingering");
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1'000'000;
    if (elapsed >= ms) break;
    sleep_ms(std::min(5L, ms - elapsed));
  }
  asm volatile("" ::: "memory");
}

__attribute__((noinline, noclone)) long idle(int fd) {
  long ms = 0;
  ssize_t n = ::read(fd, &ms, sizeof ms);
  asm volatile("" ::: "memory");
  return n == sizeof ms ? ms : -1;
}

// Fixed bytes: a 4-byte nop, then a 3-byte load at entry + 4.
long entry_fault(const long* p);
asm(R"(
  .text
  .globl entry_fault
  .type entry_fault, @function
entry_fault:
  .cfi_startproc
  nopl 0(%rax)
  movq (%rdi), %rax
  ret
  .cfi_endproc
  .size entry_fault, .-entry_fault
)");

__attribute__((noinline, noclone)) long inner_spin() {
  long n = 0;
  while (g_forever) asm volatile("" : "+r"(n));
  return n;
}

// Fixed bytes: a 4-byte nop under the first byte of a jump, then the call.
long outer_spin();
asm(R"(
  .text
  .globl outer_spin
  .type outer_spin, @function
outer_spin:
  .cfi_startproc
  nopl 0(%rax)
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call inner_spin
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  ret
  .cfi_endproc
  .size outer_spin, .-outer_spin
)");

__attribute__((noinline, noclone)) long mix(long x) {
  asm volatile("" : "+r"(x));
  return x ^ (x >> 3);
}

__attribute__((noinline, noclone)) long answer(long x) {
  long s = 0;
  for (long i = 0; i < 4; i++) s += mix(x + i);
  return 2 * s + 1;
}

__attribute__((noinline, noclone)) long answer_new(long x) {
  long s = 0;
  for (long i = 0; i < 4; i++) s += mix(x + i);
  return 2 * s + 7;
}

void* hammer_main(void* arg) {
  long k = reinterpret_cast<long>(arg);
  char name[16];
  std::snprintf(name, sizeof name, "hammer-%ld", k);
  pthread_setname_np(pthread_self(), name);
  if (g_hammers_block_sigtrap) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTRAP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
  }
  g_started.fetch_add(1);
  for (long x = k * 1000003; g_forever; x++) {
    long r = answer(x);
    long s = 0;
    for (long i = 0; i < 4; i++) s += (x + i) ^ ((x + i) >> 3);
    if (r == 2 * s + 1) g_old.fetch_add(1, std::memory_order_relaxed);
    else if (r == 2 * s + 7) g_new.fetch_add(1, std::memory_order_relaxed);
    else g_bad.fetch_add(1, std::memory_order_relaxed);
  }
  return nullptr;
}

// Never called: a range no thread is in.
__attribute__((noinline, noclone, used)) int nobody(int x) {
  asm volatile("" : "+r"(x));
  return x * 3 + 1;
}

void* parked_main(void* arg) {
  auto* self = static_cast<Parked*>(arg);
  self->tid = static_cast<pid_t>(syscall(SYS_gettid));
  char name[16];
  std::snprintf(name, sizeof name, "parked-%d", self->index);
  pthread_setname_np(pthread_self(), name);
  g_started.fetch_add(1);
  busy(self->index % 2 == 0 ? g_never_written[0] : -1);
  return nullptr;
}

void* deep_main(void* arg) {
  auto* self = static_cast<Parked*>(arg);
  self->tid = static_cast<pid_t>(syscall(SYS_gettid));
  char name[16];
  std::snprintf(name, sizeof name, self->index == 0 ? "deep" : "deep-%d", self->index);
  pthread_setname_np(pthread_self(), name);
  g_started.fetch_add(1);
  recurse(kDepth);
  return nullptr;
}

void* faulter_main(void*) {
  pthread_setname_np(pthread_self(), "faulter");
  if (g_fault_mode == 3) {
    stack_t alt{};
    alt.ss_size = 64 * 1024;
    alt.ss_sp = mmap(nullptr, alt.ss_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (alt.ss_sp == MAP_FAILED || sigaltstack(&alt, nullptr) != 0) std::exit(4);
  }
  return reinterpret_cast<void*>(entry_fault(nullptr));
}

void* spinner_main(void*) {
  pthread_setname_np(pthread_self(), "spinner");
  return reinterpret_cast<void*>(outer_spin());
}

void* lingerer_main(void* arg) {
  *static_cast<pid_t*>(arg) = static_cast<pid_t>(syscall(SYS_gettid));
  pthread_setname_np(pthread_self(), "lingerer");
  g_started.fetch_add(1);
  for (;;) {
    long ms = idle(g_commands[0]);
    if (ms < 0) break;
    linger(ms);
    say("lingered");
  }
  return nullptr;
}

}  // extern "C"

namespace {

void print_function(const char* name) {
  Dl_info info;
  void* symbol_entry = nullptr;
  void* address = dlsym(RTLD_DEFAULT, name);
  const auto* symbol = static_cast<const ElfW(Sym)*>(symbol_entry);
  if (!address || !dladdr1(address, &info, &symbol_entry, RTLD_DL_SYMENT) ||
      !(symbol = static_cast<const ElfW(Sym)*>(symbol_entry))) {
    std::fprintf(stderr, "fixture: no symbol for %s\n", name);
    std::exit(2);
  }
  char line[128];
  std::snprintf(line, sizeof line, "fn %s %#lx %lu", name, reinterpret_cast<unsigned long>(address),
                static_cast<unsigned long>(symbol->st_size));
  say(line);
}

}  // namespace

int main(int argc, char** argv) {
  int parked_count = 3, deep_count = 1, hammer_count = 0;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--hammer") == 0) hammer_count = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--hammers-block-sigtrap") == 0) g_hammers_block_sigtrap = std::atoi(argv[i + 1]) != 0;
    if (std::strcmp(argv[i], "--parked") == 0) parked_count = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--deep") == 0) deep_count = std::atoi(argv[i + 1]);
  }

  if (pipe(g_never_written) != 0 || pipe(g_commands) != 0) return 2;
  std::vector<Parked> parked(static_cast<size_t>(parked_count));
  std::vector<Parked> deep(static_cast<size_t>(deep_count));
  pid_t lingerer_tid = 0;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (int i = 0; i < parked_count; ++i) {
    pthread_t thread;
    parked[static_cast<size_t>(i)].index = i;
    if (pthread_create(&thread, &attr, parked_main, &parked[static_cast<size_t>(i)]) != 0) return 3;
  }
  pthread_t thread;
  for (int i = 0; i < deep_count; ++i) {
    deep[static_cast<size_t>(i)].index = i;
    if (pthread_create(&thread, &attr, deep_main, &deep[static_cast<size_t>(i)]) != 0) return 3;
  }
  if (pthread_create(&thread, &attr, lingerer_main, &lingerer_tid) != 0) return 3;
  for (long i = 0; i < hammer_count; ++i)
    if (pthread_create(&thread, &attr, hammer_main, reinterpret_cast<void*>(i)) != 0) return 3;
  while (g_started.load() < parked_count + deep_count + 1 + hammer_count) sleep_ms(1);

  print_function("busy");
  print_function("bottom");
  print_function("recurse");
  print_function("linger");
  print_function("idle");
  print_function("nobody");
  print_function("entry_fault");
  print_function("outer_spin");
  print_function("answer");
  print_function("answer_new");
  print_function("parked_main");
  print_function("deep_main");
  print_function("lingerer_main");
  print_function("main");
  say("thread main " + std::to_string(getpid()));
  for (const Parked& p : parked) say("thread parked-" + std::to_string(p.index) + " " + std::to_string(p.tid));
  for (const Parked& d : deep)
    say((d.index == 0 ? std::string("thread deep ") : "thread deep-" + std::to_string(d.index) + " ") +
        std::to_string(d.tid));
  say("thread lingerer " + std::to_string(lingerer_tid));
  say("ready");

  char line[256];
  while (std::fgets(line, sizeof line, stdin)) {
    long ms = 0;
    if (std::strncmp(line, "ping", 4) == 0) {
      say("pong");
    } else if (std::sscanf(line, "linger %ld", &ms) == 1) {
      ssize_t n = ::write(g_commands[1], &ms, sizeof ms);
      (void)n;
    } else if (std::strncmp(line, "counts", 6) == 0) {
      say("counts " + std::to_string(g_old.load()) + " " + std::to_string(g_new.load()) + " " +
          std::to_string(g_bad.load()));
    } else if (std::strncmp(line, "catch-sigtrap", 13) == 0) {
      struct sigaction action {};
      action.sa_handler = [](int) {};
      sigaction(SIGTRAP, &action, nullptr);
      say("caught");
    } else if (std::strncmp(line, "spin", 4) == 0 && (line[4] == '\n' || line[4] == '\0')) {
      pthread_t spinner;
      if (pthread_create(&spinner, &attr, spinner_main, nullptr) != 0) return 3;
      say("spinning");
    } else if (std::strncmp(line, "fault ", 6) == 0) {
      std::string mode(line + 6, std::strcspn(line + 6, "\n"));
      g_fault_mode = mode == "spin" ? 1 : mode == "sleep" ? 2 : mode == "spin-altstack" ? 3 : 0;
      if (g_fault_mode == 0) return 5;
      struct sigaction action {};
      action.sa_sigaction = on_fault;
      action.sa_flags = SA_SIGINFO | (g_fault_mode == 3 ? SA_ONSTACK : 0);
      sigaction(SIGSEGV, &action, nullptr);
      pthread_t faulter;
      if (pthread_create(&faulter, &attr, faulter_main, nullptr) != 0) return 3;
    }
  }
  return 0;
}
