#include "consistency/switch-guardian.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"

namespace suture::consistency {
namespace {

constexpr uint8_t kInt3 = 0xcc;
constexpr size_t kMaxEntryBytes = 16;

// What the guardian needs, in plain memory: after fork() in a multi-threaded
// process the child may only make system calls (no allocation).
struct Site {
  uint64_t site = 0;
  size_t size = 0;
  std::array<uint8_t, kMaxEntryBytes> before{}, after{};
};

void write_at(int mem, uint64_t at, const uint8_t* bytes, size_t size) {
  ssize_t n = pwrite(mem, bytes, size, static_cast<off_t>(at));
  (void)n;  // nothing to report to: we are the last one standing
}

// The guardian's whole life: wait, then repair if suture died.
[[noreturn]] void guard(int pipe_read, int mem, const std::vector<Site>& sites) {
  char byte;
  ssize_t n;
  do n = read(pipe_read, &byte, 1);
  while (n < 0 && errno == EINTR);
  if (n == 1) _exit(0);  // the switch ended: nothing to do
  for (const Site& s : sites) {
    uint8_t now[kMaxEntryBytes];
    if (pread(mem, now, s.size, static_cast<off_t>(s.site)) != static_cast<ssize_t>(s.size)) continue;
    if (now[0] != kInt3) continue;
    if (std::memcmp(now + 1, s.after.data() + 1, s.size - 1) == 0) {
      write_at(mem, s.site, s.after.data(), 1);  // the new bytes are whole but for the first
    } else {
      write_at(mem, s.site + 1, s.before.data() + 1, s.size - 1);  // int3 still guards the tail
      write_at(mem, s.site, s.before.data(), 1);
    }
  }
  _exit(0);
}

}  // namespace

SwitchGuardian::SwitchGuardian(pid_t pid, const std::vector<EntryChange>& changes) {
  std::vector<Site> sites;
  for (const auto& c : changes) {
    if (c.before.size() > kMaxEntryBytes || c.before.size() != c.after.size() || c.before.empty())
      fail("internal: entry change of {} has {} bytes", c.function, c.before.size());
    Site s;
    s.site = c.site.value();
    s.size = c.before.size();
    std::copy(c.before.begin(), c.before.end(), s.before.begin());
    std::copy(c.after.begin(), c.after.end(), s.after.begin());
    sites.push_back(s);
  }
  std::string path = fmt::format("/proc/{}/mem", pid);
  int mem = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (mem < 0) fail("cannot open {} for the switch guardian: {}", path, errno_text(errno));
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    ::close(mem);
    fail("cannot make a pipe for the switch guardian: {}", errno_text(errno));
  }
  pid_t child = fork();
  if (child < 0) {
    ::close(mem), ::close(fds[0]), ::close(fds[1]);
    fail("cannot start the switch guardian: {}", errno_text(errno));
  }
  if (child == 0) {
    // Middle process: start the guardian and leave, so that it is not ours.
    ::close(fds[1]);
    pid_t guardian = fork();
    if (guardian != 0) _exit(guardian > 0 ? 0 : 1);
    setsid();
    guard(fds[0], mem, sites);
  }
  ::close(fds[0]);
  ::close(mem);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    ::close(fds[1]);
    fail("cannot start the switch guardian");
  }
  pipe_write_ = fds[1];
}

void SwitchGuardian::repair_now() {
  ::close(pipe_write_);
  pipe_write_ = -1;
}

SwitchGuardian::~SwitchGuardian() {
  if (pipe_write_ < 0) return;
  char done = 'd';
  ssize_t n = ::write(pipe_write_, &done, 1);
  (void)n;
  ::close(pipe_write_);
}

}  // namespace suture::consistency
