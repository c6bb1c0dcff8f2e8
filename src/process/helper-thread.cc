#include "process/helper-thread.h"

#include <elf.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "elf/elf-file.h"
#include "process/loaded-objects.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {

using Clock = std::chrono::steady_clock;

// The trampoline, at `site` in the padding after an object's code. A diverted
// thread enters at 0x00: it steps below its red zone, saves the flags and
// every register the code touches, blocks every signal (the child inherits
// that mask, so no signal can ever reach it), clones, puts its mask back,
// restores, and jumps to where it would have resumed. The child starts at the
// instruction after the clone with rax = 0 and loops in pause() at 0x8c; its
// stack pointer is the end of the page, read-only: it never needs a stack.
// Once the page of process/syscall-server.h is mapped (its address at 0xb8), the
// helper is diverted to 0xc8, where it serves system calls without a stop: it
// waits on the page's request word with futex(), and when it moves makes the
// call written in the page, stores the result, sets the done word and wakes
// suture.
constexpr uint64_t kChildAt = 0x8c, kMaskAt = 0x98, kResumeAt = 0xa0, kNameAt = 0xa8, kPageAt = 0xb8,
                   kSyncResumeAt = 0xc0, kSyncAt = 0xc8, kSize = 0x127;
constexpr uint64_t kCloneFlags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
static_assert(kCloneFlags < 0x80000000);

std::vector<uint8_t> trampoline(RemoteAddr site, RemoteAddr child_stack) {
  std::vector<uint8_t> c;
  auto bytes = [&](std::initializer_list<uint8_t> b) { c.insert(c.end(), b); };
  auto u32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) c.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  // rip-relative displacement to `target` for an instruction whose last 4 bytes come next
  auto rel32_to = [&](uint64_t target) { u32(static_cast<uint32_t>(target - (c.size() + 4))); };
  bytes({0x48, 0x8d, 0x64, 0x24, 0x80});                    // 00 lea rsp, [rsp-0x80]
  bytes({0x9c, 0x50, 0x51, 0x52, 0x56, 0x57});              // 05 pushfq; push rax rcx rdx rsi rdi
  bytes({0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53});  // 0b push r8 r9 r10 r11
  bytes({0x48, 0x8d, 0x64, 0x24, 0xf8});                    // 13 lea rsp, [rsp-8]: the old mask
  bytes({0xb8}), u32(SYS_rt_sigprocmask);                   // 18 mov eax, SYS_rt_sigprocmask
  bytes({0xbf}), u32(SIG_SETMASK);                          // 1d mov edi, SIG_SETMASK
  bytes({0x48, 0x8d, 0x35}), rel32_to(kMaskAt);             // 22 lea rsi, [rip -> every signal]
  bytes({0x48, 0x89, 0xe2});                                // 29 mov rdx, rsp
  bytes({0x41, 0xba}), u32(8);                              // 2c mov r10d, 8
  bytes({0x0f, 0x05});                                      // 32 syscall
  bytes({0xb8}), u32(SYS_clone);                            // 34 mov eax, SYS_clone
  bytes({0xbf}), u32(static_cast<uint32_t>(kCloneFlags));   // 39 mov edi, flags
  bytes({0x48, 0x8d, 0x35});                                // 3e lea rsi, [rip -> child_stack]
  u32(static_cast<uint32_t>(child_stack - (site + static_cast<int64_t>(c.size() + 4))));
  bytes({0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0});  // 45 xor edx,edx; xor r10d,r10d; xor r8d,r8d
  bytes({0x0f, 0x05});                                      // 4d syscall
  bytes({0x48, 0x85, 0xc0});                                // 4f test rax, rax
  bytes({0x74, static_cast<uint8_t>(kChildAt - (c.size() + 2))});  // 52 je child
  bytes({0xb8}), u32(SYS_rt_sigprocmask);                   // 54 mov eax, SYS_rt_sigprocmask
  bytes({0xbf}), u32(SIG_SETMASK);                          // 59 mov edi, SIG_SETMASK
  bytes({0x48, 0x89, 0xe6, 0x31, 0xd2});                    // 5e mov rsi, rsp; xor edx, edx
  bytes({0x41, 0xba}), u32(8);                              // 63 mov r10d, 8
  bytes({0x0f, 0x05});                                      // 69 syscall
  bytes({0x48, 0x8d, 0x64, 0x24, 0x08});                    // 6b lea rsp, [rsp+8]
  bytes({0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58});  // 70 pop r11 r10 r9 r8
  bytes({0x5f, 0x5e, 0x5a, 0x59, 0x58, 0x9d});              // 78 pop rdi rsi rdx rcx rax; popfq
  bytes({0x48, 0x8d, 0xa4, 0x24}), u32(0x80);               // 7e lea rsp, [rsp+0x80]
  bytes({0xff, 0x25}), rel32_to(kResumeAt);                 // 86 jmp [rip -> resume]
  if (c.size() != kChildAt) fail("internal: helper trampoline child at {:#x}", c.size());
  bytes({0xb8}), u32(SYS_pause);                            // 8c mov eax, SYS_pause
  bytes({0x0f, 0x05, 0xeb, 0xf7});                          // 91 syscall; jmp child
  c.resize(kMaskAt, 0xcc);
  c.resize(kResumeAt, 0xff);  // every signal (the kernel keeps SIGKILL, SIGSTOP)
  c.resize(kNameAt, 0);       // resume: written by Tracee::divert
  for (char ch : std::string_view("suture-helper")) c.push_back(static_cast<uint8_t>(ch));
  c.push_back(0);
  c.resize(kPageAt, 0);
  c.resize(kSyncAt, 0);  // the page's address (HelperThread::start_serving), divert's resume slot
  static_assert(SyscallServer::kRequestAt == 0 && SyscallServer::kDoneAt == 4 && SyscallServer::kResultAt == 8 &&
                SyscallServer::kNumberAt == 16 && SyscallServer::kArgsAt == 24);
  bytes({0x48, 0x8b, 0x1d}), rel32_to(kPageAt);                // c8 mov rbx, [rip -> page]
  const uint64_t wait = c.size();                              // cf wait:
  bytes({0x8b, 0x13, 0x3b, 0x53, 0x04});                       //    mov edx, [rbx]; cmp edx, [rbx+4]
  bytes({0x75, 0x11});                                         //    jne work (asked since done)
  bytes({0xb8}), u32(SYS_futex);                               //    mov eax, SYS_futex
  bytes({0x48, 0x89, 0xdf, 0x31, 0xf6, 0x45, 0x31, 0xd2});    //    mov rdi, rbx; FUTEX_WAIT; no timeout
  bytes({0x0f, 0x05});                                         //    syscall (returns unless [rbx] == edx)
  bytes({0xeb, static_cast<uint8_t>(wait - (c.size() + 2))});  //    jmp wait
  if (c.size() != wait + 0x18) fail("internal: helper system call loop misassembled");
  bytes({0x41, 0x89, 0xd4});                                   // work: mov r12d, edx
  bytes({0x48, 0x8b, 0x43, 0x10});                             //    mov rax, [rbx+16]: the number
  bytes({0x48, 0x8b, 0x7b, 0x18, 0x48, 0x8b, 0x73, 0x20});    //    mov rdi, [rbx+24]; mov rsi, [rbx+32]
  bytes({0x48, 0x8b, 0x53, 0x28, 0x4c, 0x8b, 0x53, 0x30});    //    mov rdx, [rbx+40]; mov r10, [rbx+48]
  bytes({0x4c, 0x8b, 0x43, 0x38, 0x4c, 0x8b, 0x4b, 0x40});    //    mov r8, [rbx+56]; mov r9, [rbx+64]
  bytes({0x0f, 0x05});                                         //    syscall
  bytes({0x48, 0x89, 0x43, 0x08});                             //    mov [rbx+8], rax: the result
  bytes({0x44, 0x89, 0x63, 0x04});                             //    mov [rbx+4], r12d: done
  bytes({0xb8}), u32(SYS_futex);                               //    mov eax, SYS_futex
  bytes({0x48, 0x8d, 0x7b, 0x04});                             //    lea rdi, [rbx+4]
  bytes({0xbe}), u32(FUTEX_WAKE);                              //    mov esi, FUTEX_WAKE
  bytes({0xba}), u32(1);                                       //    mov edx, 1
  bytes({0x0f, 0x05});                                         //    syscall
  bytes({0xeb, static_cast<uint8_t>(wait - (c.size() + 2))});  //    jmp wait
  if (c.size() != kSize) fail("internal: helper trampoline is {:#x} bytes", c.size());
  return c;
}

// A kSize window of zero bytes, 16-aligned, in the padding between the end of
// an object's executable segment and the end of its last page: mapped
// executable, never run, never referenced (ld pads the file so with -z
// separate-code). libc first: every process has it, and its padding is large.
std::optional<RemoteRange> find_padding(pid_t pid, const Memory& memory, std::string* why_not) {
  std::vector<LoadedObject> objects = loaded_objects(pid, memory);
  std::stable_sort(objects.begin(), objects.end(), [](const LoadedObject& a, const LoadedObject& b) {
    return (a.path.find("/libc.so") != std::string::npos) > (b.path.find("/libc.so") != std::string::npos);
  });
  for (const LoadedObject& object : objects) {
    if (object.is_vdso || object.path.empty()) continue;
    std::optional<elf::ElfFile> file;
    try {
      file.emplace(elf::ElfFile::open(openable_path(pid, object)));
    } catch (const Error&) {
      continue;
    }
    for (const elf::Segment& segment : file->segments()) {
      if (segment.type != PT_LOAD || !(segment.flags & PF_X)) continue;
      RemoteAddr end = object.bias + static_cast<int64_t>(segment.vaddr + segment.memsz);
      RemoteAddr page_end = end.align_up(4096);
      bool mapped = std::any_of(object.mappings.begin(), object.mappings.end(), [&](const Mapping& m) {
        return m.exec && m.start <= end && page_end <= m.end;
      });
      if (!mapped) continue;
      for (RemoteAddr at = end.align_up(16); at + static_cast<int64_t>(kSize) <= page_end; at += 16) {
        auto bytes = memory.read(at, kSize);
        if (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; })) return RemoteRange{at, kSize};
      }
    }
  }
  *why_not = "no object of the process has zero padding after its code to start it from";
  return std::nullopt;
}

constexpr auto kStartTimeout = std::chrono::seconds(2);
constexpr auto kLeaveTimeout = std::chrono::milliseconds(500);

}  // namespace

HelperThread::HelperThread(Tracee& tracee) : tracee_(tracee) {
  try {
    start();
  } catch (const TargetGone&) {
    throw;
  } catch (const std::exception& e) {
    why_not_ = e.what();
    tracee_.release_all();
  }
}

HelperThread::~HelperThread() { stop(); }

void HelperThread::start() {
  const pid_t pid = tracee_.pid();
  // A filter could kill the process for a clone() it never makes itself.
  if (auto mode = status_field(pid, pid, "Seccomp"); mode && *mode != "0")
    fail("process {} runs under seccomp (mode {}); suture makes no system call it did not plan", pid, *mode);
  std::string why;
  auto site = find_padding(pid, tracee_.memory(), &why);
  if (!site) fail("{}", why);
  RemoteAddr page_end = site->start.align_up(4096);  // the padding never starts a page
  // Written while everything runs: nothing executes or reads these bytes.
  tracee_.memory().write(site->start, trampoline(site->start, page_end));
  site_ = *site;

  // One thread is held only to send it through the trampoline.
  auto before = list_threads(pid);
  std::set<pid_t> known(before.begin(), before.end());
  tracee_.release_all();
  creator_ = tracee_.hold_one(Tracee::Work::calls);
  tracee_.divert(creator_, site->start, site->start + static_cast<int64_t>(kResumeAt));

  // The child shows up blocked in pause() inside the trampoline.
  auto deadline = Clock::now() + kStartTimeout;
  for (;;) {
    for (pid_t tid : list_threads(pid)) {
      if (known.contains(tid)) continue;
      auto view = blocked_view(pid, tid);
      if (view && view->number == SYS_pause && site->contains(view->pc)) tid_ = tid;
    }
    if (tid_ != 0) break;
    if (Clock::now() > deadline) {
      // The creator may yet run the trampoline: its bytes stay.
      site_ = {};
      fail("no helper thread appeared within {} s of sending thread {} through the trampoline", kStartTimeout.count(),
           creator_);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  tracee_.set_helper(tid_);

  // Its name, for ps and top; from now on system calls run on it.
  int64_t named =
      tracee_.brief_syscall(SYS_prctl, PR_SET_NAME, (site->start + static_cast<int64_t>(kNameAt)).value());
  if (named < 0) fmt::print(stderr, "suture: warning: naming the helper thread failed: {}\n",
                            errno_text(static_cast<int>(-named)));
  try {
    start_serving();
  } catch (const TargetGone&) {
    throw;
  } catch (const std::exception& e) {
    tracee_.release_all();
    why_not_served_ = e.what();
  }
  tracee_.set_helper(tid_, server_.get());
}

// A memfd page mapped shared in the target and here; its descriptor in the
// target lives only until it is mapped.
void HelperThread::start_serving() {
  const pid_t pid = tracee_.pid();
  RemoteAddr name = site_.start + static_cast<int64_t>(kNameAt);
  auto call = [&](long number, std::initializer_list<uint64_t> args, const char* what) {
    std::vector<uint64_t> a(args);
    a.resize(6, 0);
    int64_t r = tracee_.brief_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
    if (r < 0 && r > -4096) fail("{} in process {} failed: {}", what, pid, errno_text(static_cast<int>(-r)));
    return r;
  };
  int64_t remote_fd = call(SYS_memfd_create, {name.value(), MFD_CLOEXEC}, "memfd_create");
  bool fd_open = true;  // once closed, its number may be the target's again: never close it twice
  std::optional<RemoteAddr> page;
  try {
    call(SYS_ftruncate, {static_cast<uint64_t>(remote_fd), SyscallServer::kPageSize}, "ftruncate");
    page = RemoteAddr(static_cast<uint64_t>(call(SYS_mmap,
                                                 {0, SyscallServer::kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED,
                                                  static_cast<uint64_t>(remote_fd), 0},
                                                 "mmap")));
    std::string path = fmt::format("/proc/{}/fd/{}", pid, remote_fd);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail("cannot open {}: {}", path, errno_text(errno));
    try {
      server_ = std::make_unique<SyscallServer>(fd, *page);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
    fd_open = false;
    call(SYS_close, {static_cast<uint64_t>(remote_fd)}, "close");
  } catch (...) {
    server_.reset();
    try {
      if (page) call(SYS_munmap, {page->value(), SyscallServer::kPageSize}, "munmap");
      if (fd_open) {
        fd_open = false;
        call(SYS_close, {static_cast<uint64_t>(remote_fd)}, "close");
      }
    } catch (const std::exception&) {
    }
    throw;
  }
  // The loop reads the page's address once, when it starts.
  uint64_t at = page->value();
  tracee_.memory().write(site_.start + static_cast<int64_t>(kPageAt),
                         std::span(reinterpret_cast<const uint8_t*>(&at), sizeof at));
  if (tracee_.hold_one() != tid_) {
    tracee_.release_all();
    server_.reset();
    call(SYS_munmap, {page->value(), SyscallServer::kPageSize}, "munmap");
    fail("the helper thread could not be held");
  }
  tracee_.divert(tid_, site_.start + static_cast<int64_t>(kSyncAt), site_.start + static_cast<int64_t>(kSyncResumeAt));
}

void HelperThread::stop() {
  if (tid_ != 0) {
    try {
      tracee_.release_all();
      if (server_) {
        // Back to pause() first: the loop reads the page, which goes next.
        RemoteAddr page = server_->remote();
        if (tracee_.hold_one() != tid_) fail("the helper thread could not be held");
        tracee_.divert(tid_, site_.start + static_cast<int64_t>(kChildAt),
                       site_.start + static_cast<int64_t>(kSyncResumeAt));
        tracee_.set_helper(tid_, nullptr);
        server_.reset();
        int64_t r = tracee_.brief_syscall(SYS_munmap, page.value(), SyscallServer::kPageSize);
        if (r < 0)
          fmt::print(stderr, "suture: warning: the helper's page at {} stays mapped in process {}: {}\n", page,
                     tracee_.pid(), errno_text(static_cast<int>(-r)));
      }
      if (tracee_.hold_one() == tid_) tracee_.end_thread(tid_);
      tracee_.release_all();
    } catch (const std::exception& e) {
      if (process_alive(tracee_.pid()))  // else it ended with its process
        fmt::print(stderr,
                   "suture: warning: the helper thread {} of process {} was not ended ({}); it stays blocked, "
                   "serving no one\n",
                   tid_, tracee_.pid(), e.what());
      tracee_.release_all();
      site_ = {};  // it still runs there
    }
    tracee_.set_helper(0);
    tid_ = 0;
  }
  if (site_.empty() || !process_alive(tracee_.pid())) return;
  // The padding gets its zeros back once the creator is seen out of it (blocked
  // elsewhere, or gone). A thread that keeps running is not held for this: the
  // bytes are left, harmless, and the next start uses other padding.
  auto deadline = Clock::now() + kLeaveTimeout;
  for (;;) {
    auto view = blocked_view(tracee_.pid(), creator_);
    bool gone = thread_state(tracee_.pid(), creator_) == '\0';
    if (gone || (view && !site_.contains(view->pc))) break;
    if (Clock::now() > deadline) {
      site_ = {};
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  try {
    tracee_.memory().write(site_.start, std::vector<uint8_t>(site_.size, 0));
  } catch (const std::exception&) {
  }
  site_ = {};
}

}  // namespace suture::process
