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
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"
#include "common/page.h"
#include "elf/elf-file.h"
#include "process/loaded-objects.h"
#include "process/maps.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {

using Clock = std::chrono::steady_clock;

// The trampoline, at `site` in the padding after an object's code.
//
// A diverted thread enters at `entry`: it steps below its red zone, saves the
// flags and every register the code touches, blocks every signal (the child
// inherits that mask, so no signal can ever reach it), clones, puts its mask
// back, restores, and jumps to where it would have resumed. The child starts
// after the clone with rax = 0, and its stack pointer is the end of the page,
// read-only: it never needs a stack. It names itself, makes the page of
// process/syscall-server.h on its own (memfd_create, ftruncate, mmap shared)
// and serves system calls without a stop: it waits on the page's request word
// with futex(), and when it moves makes the call written in the page, stores
// the result, sets the done word and wakes suture. Its first wait shows suture
// the page and the memfd's descriptor (/proc/PID/task/TID/syscall: the
// futex's first and fifth arguments, the sixth kReadyMark). If a call of the
// set-up fails, it closes what it opened and waits on a zero word of the
// trampoline instead, the failed call's number and result as fifth and sixth
// arguments. `park` is a pause() loop to divert it to before its page goes.
struct Trampoline {
  std::vector<uint8_t> code;
  uint64_t entry = 0, resume_slot = 0, park = 0, park_resume_slot = 0, zero_word = 0, name = 0;
};

constexpr uint64_t kReadyMark = 0x5375747572652d31;  // any value no set-up failure leaves in r9
constexpr uint64_t kCloneFlags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
static_assert(kCloneFlags < 0x80000000);

// x86-64 machine code with labels: rel8 and rel32 operands are filled in once
// every label is placed.
class Assembler {
 public:
  void bytes(std::initializer_list<uint8_t> b) { code_.insert(code_.end(), b); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) code_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) code_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void label(const char* name) {
    if (!labels_.emplace(name, code_.size()).second) fail("internal: helper trampoline label {} twice", name);
  }
  // The displacement to `name` from the end of this operand (the instruction's last bytes).
  void rel8(const char* name) {
    fixups_.push_back({code_.size(), 1, name});
    code_.push_back(0);
  }
  void rel32(const char* name) {
    fixups_.push_back({code_.size(), 4, name});
    u32(0);
  }
  void align(size_t to, uint8_t fill) { code_.resize((code_.size() + to - 1) / to * to, fill); }
  size_t size() const { return code_.size(); }
  uint64_t at(const char* name) const { return labels_.at(name); }

  std::vector<uint8_t> finish() {
    for (const Fixup& f : fixups_) {
      auto it = labels_.find(f.label);
      if (it == labels_.end()) fail("internal: helper trampoline label {} missing", f.label);
      int64_t d = static_cast<int64_t>(it->second) - static_cast<int64_t>(f.at + f.width);
      if (f.width == 1 && (d < -128 || d > 127)) fail("internal: helper trampoline jump to {} too far", f.label);
      for (size_t i = 0; i < f.width; ++i) code_[f.at + i] = static_cast<uint8_t>(static_cast<uint64_t>(d) >> (8 * i));
    }
    return code_;
  }

 private:
  struct Fixup {
    size_t at, width;
    std::string label;
  };
  std::vector<uint8_t> code_;
  std::map<std::string, size_t> labels_;
  std::vector<Fixup> fixups_;
};

Trampoline trampoline(RemoteAddr site, RemoteAddr child_stack) {
  Assembler a;
  auto mov_eax = [&](uint32_t v) { a.bytes({0xb8}), a.u32(v); };
  auto mov_edi = [&](uint32_t v) { a.bytes({0xbf}), a.u32(v); };
  auto mov_esi = [&](uint32_t v) { a.bytes({0xbe}), a.u32(v); };
  auto mov_edx = [&](uint32_t v) { a.bytes({0xba}), a.u32(v); };
  auto mov_r10d = [&](uint32_t v) { a.bytes({0x41, 0xba}), a.u32(v); };
  auto mov_r13d = [&](uint32_t v) { a.bytes({0x41, 0xbd}), a.u32(v); };
  auto syscall = [&] { a.bytes({0x0f, 0x05}); };

  a.label("entry");
  a.bytes({0x48, 0x8d, 0x64, 0x24, 0x80});                    // lea rsp, [rsp-0x80]
  a.bytes({0x9c, 0x50, 0x51, 0x52, 0x56, 0x57});              // pushfq; push rax rcx rdx rsi rdi
  a.bytes({0x41, 0x50, 0x41, 0x51, 0x41, 0x52, 0x41, 0x53});  // push r8 r9 r10 r11
  a.bytes({0x48, 0x8d, 0x64, 0x24, 0xf8});                    // lea rsp, [rsp-8]: the old mask
  mov_eax(SYS_rt_sigprocmask), mov_edi(SIG_SETMASK);
  a.bytes({0x48, 0x8d, 0x35}), a.rel32("every_signal");       // lea rsi, [rip -> every signal]
  a.bytes({0x48, 0x89, 0xe2});                                // mov rdx, rsp
  mov_r10d(8), syscall();
  mov_eax(SYS_clone), mov_edi(static_cast<uint32_t>(kCloneFlags));
  a.bytes({0x48, 0x8d, 0x35});                                // lea rsi, [rip -> child_stack]
  a.u32(static_cast<uint32_t>(child_stack - (site + static_cast<int64_t>(a.size() + 4))));
  a.bytes({0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0});  // xor edx,edx; xor r10d,r10d; xor r8d,r8d
  syscall();
  a.bytes({0x48, 0x85, 0xc0, 0x74}), a.rel8("child");         // test rax, rax; je child
  mov_eax(SYS_rt_sigprocmask), mov_edi(SIG_SETMASK);
  a.bytes({0x48, 0x89, 0xe6, 0x31, 0xd2});                    // mov rsi, rsp; xor edx, edx
  mov_r10d(8), syscall();
  a.bytes({0x48, 0x8d, 0x64, 0x24, 0x08});                    // lea rsp, [rsp+8]
  a.bytes({0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, 0x41, 0x58});  // pop r11 r10 r9 r8
  a.bytes({0x5f, 0x5e, 0x5a, 0x59, 0x58, 0x9d});              // pop rdi rsi rdx rcx rax; popfq
  a.bytes({0x48, 0x8d, 0xa4, 0x24}), a.u32(0x80);             // lea rsp, [rsp+0x80]
  a.bytes({0xff, 0x25}), a.rel32("resume");                   // jmp [rip -> resume]

  a.label("child");
  mov_eax(SYS_prctl), mov_edi(PR_SET_NAME);
  a.bytes({0x48, 0x8d, 0x35}), a.rel32("name");               // lea rsi, [rip -> name]
  syscall();                                                  // a name is for ps and top only
  mov_eax(SYS_memfd_create);
  a.bytes({0x48, 0x8d, 0x3d}), a.rel32("name");               // lea rdi, [rip -> name]
  mov_esi(MFD_CLOEXEC), syscall();
  mov_r13d(SYS_memfd_create);
  a.bytes({0x48, 0x85, 0xc0, 0x0f, 0x88}), a.rel32("failed");  // test rax, rax; js failed
  a.bytes({0x49, 0x89, 0xc4});                                // mov r12, rax: the descriptor
  mov_eax(SYS_ftruncate);
  a.bytes({0x4c, 0x89, 0xe7});                                // mov rdi, r12
  mov_esi(SyscallServer::kPageSize), syscall();
  mov_r13d(SYS_ftruncate);
  a.bytes({0x48, 0x85, 0xc0, 0x0f, 0x88}), a.rel32("failed_close");  // test rax, rax; js failed_close
  mov_eax(SYS_mmap);
  a.bytes({0x31, 0xff});                                      // xor edi, edi
  mov_esi(SyscallServer::kPageSize), mov_edx(PROT_READ | PROT_WRITE), mov_r10d(MAP_SHARED);
  a.bytes({0x4d, 0x89, 0xe0, 0x45, 0x31, 0xc9});              // mov r8, r12; xor r9d, r9d
  syscall();
  mov_r13d(SYS_mmap);
  a.bytes({0x48, 0x3d}), a.u32(static_cast<uint32_t>(-4095));  // cmp rax, -4095
  a.bytes({0x0f, 0x83}), a.rel32("failed_close");             // jae failed_close (an error)
  a.bytes({0x48, 0x89, 0xc3});                                // mov rbx, rax: the page
  a.bytes({0x4d, 0x89, 0xe0});                                // mov r8, r12
  a.bytes({0x49, 0xb9}), a.u64(kReadyMark);                   // mov r9, kReadyMark

  static_assert(SyscallServer::kRequestAt == 0 && SyscallServer::kDoneAt == 4 && SyscallServer::kResultAt == 8 &&
                SyscallServer::kNumberAt == 16 && SyscallServer::kArgsAt == 24);
  a.label("wait");
  a.bytes({0x8b, 0x13, 0x3b, 0x53, 0x04});                    // mov edx, [rbx]; cmp edx, [rbx+4]
  a.bytes({0x75}), a.rel8("work");                            // jne work (asked since done)
  mov_eax(SYS_futex);
  a.bytes({0x48, 0x89, 0xdf, 0x31, 0xf6, 0x45, 0x31, 0xd2});  // mov rdi, rbx; FUTEX_WAIT; no timeout
  syscall();                                                  // returns unless [rbx] == edx
  a.bytes({0xeb}), a.rel8("wait");
  a.label("work");
  a.bytes({0x41, 0x89, 0xd4});                                // mov r12d, edx
  a.bytes({0x48, 0x8b, 0x43, 0x10});                          // mov rax, [rbx+16]: the number
  static_assert(SyscallServer::kLeave == -2);
  a.bytes({0x48, 0x83, 0xf8, 0xfe, 0x0f, 0x84}), a.rel32("leave");  // cmp rax, kLeave; je leave
  a.bytes({0x48, 0x8b, 0x7b, 0x18, 0x48, 0x8b, 0x73, 0x20});  // mov rdi, [rbx+24]; mov rsi, [rbx+32]
  a.bytes({0x48, 0x8b, 0x53, 0x28, 0x4c, 0x8b, 0x53, 0x30});  // mov rdx, [rbx+40]; mov r10, [rbx+48]
  a.bytes({0x4c, 0x8b, 0x43, 0x38, 0x4c, 0x8b, 0x4b, 0x40});  // mov r8, [rbx+56]; mov r9, [rbx+64]
  syscall();
  a.bytes({0x48, 0x89, 0x43, 0x08});                          // mov [rbx+8], rax: the result
  a.bytes({0x44, 0x89, 0x63, 0x04});                          // mov [rbx+4], r12d: done
  mov_eax(SYS_futex);
  a.bytes({0x48, 0x8d, 0x7b, 0x04});                          // lea rdi, [rbx+4]
  mov_esi(FUTEX_WAKE), mov_edx(1), syscall();
  a.bytes({0xeb}), a.rel8("wait");
  a.label("leave");                                           // answered before the page goes
  a.bytes({0x48, 0xc7, 0x43, 0x08}), a.u32(0);                // mov qword [rbx+8], 0: the result
  a.bytes({0x44, 0x89, 0x63, 0x04});                          // mov [rbx+4], r12d: done
  mov_eax(SYS_futex);
  a.bytes({0x48, 0x8d, 0x7b, 0x04});                          // lea rdi, [rbx+4]
  mov_esi(FUTEX_WAKE), mov_edx(1), syscall();
  mov_eax(SYS_munmap);
  a.bytes({0x48, 0x89, 0xdf});                                // mov rdi, rbx
  mov_esi(SyscallServer::kPageSize), syscall();
  mov_eax(SYS_exit);
  a.bytes({0x31, 0xff});                                      // xor edi, edi
  syscall();                                                  // this thread alone; never returns
  a.bytes({0xeb}), a.rel8("park");

  a.label("failed_close");
  a.bytes({0x49, 0x89, 0xc6});                                // mov r14, rax
  mov_eax(SYS_close);
  a.bytes({0x4c, 0x89, 0xe7});                                // mov rdi, r12
  syscall();
  a.bytes({0x4c, 0x89, 0xf0});                                // mov rax, r14
  a.label("failed");
  a.bytes({0x4d, 0x89, 0xe8, 0x49, 0x89, 0xc1});              // mov r8, r13; mov r9, rax
  a.label("report");
  mov_eax(SYS_futex);
  a.bytes({0x48, 0x8d, 0x3d}), a.rel32("zero_word");          // lea rdi, [rip -> zero word]
  mov_esi(FUTEX_WAIT_PRIVATE);
  a.bytes({0x31, 0xd2, 0x45, 0x31, 0xd2});                    // xor edx, edx; xor r10d, r10d
  syscall();
  a.bytes({0xeb}), a.rel8("report");

  a.label("park");
  mov_eax(SYS_pause), syscall();
  a.bytes({0xeb}), a.rel8("park");

  a.align(8, 0xcc);
  a.label("every_signal");
  a.u64(~0ULL);  // the kernel keeps SIGKILL and SIGSTOP
  a.label("resume");
  a.u64(0);  // Tracee::divert's slot for the creator
  a.label("park_resume");
  a.u64(0);  // and for the helper when it goes to `park`
  a.label("zero_word");
  a.u64(0);
  a.label("name");
  for (char ch : std::string_view("suture-helper")) a.bytes({static_cast<uint8_t>(ch)});
  a.bytes({0});

  Trampoline t;
  t.entry = a.at("entry");
  t.resume_slot = a.at("resume");
  t.park = a.at("park");
  t.park_resume_slot = a.at("park_resume");
  t.zero_word = a.at("zero_word");
  t.name = a.at("name");
  t.code = a.finish();
  return t;
}

// Its length and labels, the same wherever it goes.
const Trampoline& layout() {
  static const Trampoline at_zero = trampoline(RemoteAddr(0), RemoteAddr(0));
  return at_zero;
}

// A window of zero bytes as long as the trampoline, 16-aligned, in the padding between the end of
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
      const size_t size = layout().code.size();
      for (RemoteAddr at = end.align_up(16); at + static_cast<int64_t>(size) <= page_end; at += 16) {
        auto bytes = memory.read(at, size);
        if (std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; })) return RemoteRange{at, size};
      }
    }
  }
  *why_not = "no object of the process has zero padding after its code to start it from";
  return std::nullopt;
}

// The calls the helper makes to set itself up, by number.
std::string setup_call_name(long number) {
  switch (number) {
    case SYS_memfd_create: return "memfd_create";
    case SYS_ftruncate: return "ftruncate";
    case SYS_mmap: return "mmap";
    default: return fmt::format("system call {}", number);
  }
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
  RemoteAddr page_end = site->start.align_up(kPageSize);  // the padding never starts a page
  // Written while everything runs: nothing executes or reads these bytes.
  tracee_.memory().write(site->start, trampoline(site->start, page_end).code);
  site_ = *site;
  auto at = [&](uint64_t offset) { return site->start + static_cast<int64_t>(offset); };

  // One thread is held only to send it through the trampoline.
  auto before = list_threads(pid);
  std::set<pid_t> known(before.begin(), before.end());
  tracee_.release_all();
  creator_ = tracee_.hold_one(Tracee::Work::calls);
  tracee_.divert(creator_, at(layout().entry), at(layout().resume_slot));

  // The child shows up blocked in futex() inside the trampoline, serving or
  // reporting a failed set-up; until then it runs, on its own time.
  std::optional<KernelView> first_wait;
  auto deadline = Clock::now() + kStartTimeout;
  for (;;) {
    for (pid_t tid : list_threads(pid)) {
      if (known.contains(tid)) continue;
      auto view = blocked_view(pid, tid);
      if (view && view->number == SYS_futex && site->contains(view->pc)) {
        tid_ = tid;
        first_wait = view;
      }
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
  if (thread_name(pid, tid_) != "suture-helper")
    fmt::print(stderr, "suture: warning: the helper thread {} of process {} could not name itself\n", tid_, pid);

  const auto& args = first_wait->args;
  if (RemoteAddr(args[0]) == at(layout().zero_word)) {
    why_not_served_ = fmt::format("{} in process {} failed: {}", setup_call_name(static_cast<long>(args[4])), pid,
                                  errno_text(static_cast<int>(-static_cast<int64_t>(args[5]))));
    return;
  }
  if (args[5] != kReadyMark) fail("internal: the helper thread {} waits in a futex it should not", tid_);
  try {
    start_serving(RemoteAddr(args[0]), static_cast<int>(args[4]));
  } catch (const TargetGone&) {
    throw;
  } catch (const std::exception& e) {
    tracee_.release_all();
    why_not_served_ = e.what();
  }
}

// The helper has mapped its page (`page`, from memfd `remote_fd` in the
// target): map it here too, through /proc/PID/fd, and have the helper close
// that descriptor, the first call it serves.
void HelperThread::start_serving(RemoteAddr page, int remote_fd) {
  const pid_t pid = tracee_.pid();
  try {
    std::string path = fmt::format("/proc/{}/fd/{}", pid, remote_fd);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) fail("cannot open {}: {}", path, errno_text(errno));
    try {
      server_ = std::make_unique<SyscallServer>(fd, page);
    } catch (...) {
      ::close(fd);
      throw;
    }
    ::close(fd);
  } catch (...) {
    // Through ptrace then, once it no longer reads the page.
    park();
    int64_t unmapped = tracee_.brief_syscall(SYS_munmap, page.value(), SyscallServer::kPageSize);
    int64_t closed = tracee_.brief_syscall(SYS_close, static_cast<uint64_t>(remote_fd));
    if (unmapped < 0 || closed < 0)
      fmt::print(stderr, "suture: warning: the helper's page at {} or its descriptor {} stays in process {}\n", page,
                 remote_fd, pid);
    throw;
  }
  tracee_.set_helper(tid_, server_.get());
  int64_t closed = tracee_.brief_syscall(SYS_close, static_cast<uint64_t>(remote_fd));
  if (closed < 0)
    fmt::print(stderr, "suture: warning: the helper's descriptor {} stays open in process {}: {}\n", remote_fd, pid,
               errno_text(static_cast<int>(-closed)));
}

// Asks the serving helper to unmap its page and exit, as one more request: no
// stop. False, with nothing changed, if it did not answer; true once it is
// gone (tid_ is 0 then).
bool HelperThread::leave_unseen() {
  const pid_t pid = tracee_.pid();
  auto alive = [&] { return !has_ended(thread_state(pid, tid_)); };
  if (!server_->run(SyscallServer::kLeave, {}, kLeaveTimeout, alive)) {
    if (alive()) return false;
    server_.reset();  // gone with its process
    tid_ = 0;
    return true;
  }
  RemoteAddr page = server_->remote();
  tracee_.set_helper(tid_, nullptr);
  server_.reset();
  auto deadline = Clock::now() + kLeaveTimeout;
  while (alive()) {
    if (Clock::now() > deadline) {
      fmt::print(stderr, "suture: warning: the helper thread {} of process {} did not exit after leaving its loop\n",
                 tid_, pid);
      site_ = {};  // it may still run there
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  auto maps = read_maps(pid);
  if (std::any_of(maps.begin(), maps.end(), [&](const Mapping& m) { return m.start == page; }))
    fmt::print(stderr, "suture: warning: the helper's page at {} stays mapped in process {}\n", page, pid);
  tid_ = 0;
  return true;
}

// Sends the helper from its system-call loop to a pause() loop, where it reads
// nothing, and forgets the server: its page may go.
void HelperThread::park() {
  tracee_.release_all();
  if (tracee_.hold_one() != tid_) fail("the helper thread could not be held");
  tracee_.divert(tid_, site_.start + static_cast<int64_t>(layout().park),
                 site_.start + static_cast<int64_t>(layout().park_resume_slot));
  tracee_.set_helper(tid_, nullptr);
  server_.reset();
}

void HelperThread::stop() {
  if (tid_ != 0) {
    try {
      tracee_.release_all();
      if (server_ && !leave_unseen()) {
        // Out of the loop first: it reads the page, which goes next.
        RemoteAddr page = server_->remote();
        park();
        int64_t r = tracee_.brief_syscall(SYS_munmap, page.value(), SyscallServer::kPageSize);
        if (r < 0)
          fmt::print(stderr, "suture: warning: the helper's page at {} stays mapped in process {}: {}\n", page,
                     tracee_.pid(), errno_text(static_cast<int>(-r)));
      }
      if (tid_ != 0 && tracee_.hold_one() == tid_) tracee_.end_thread(tid_);
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
