// /proc/PID/mem rather than process_vm_readv/writev: only the former writes
// through read-only text (the kernel breaks copy-on-write as for a debugger),
// and one descriptor serves both directions without stopping the target.
#include "process/memory.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "common/error.h"
#include "common/page.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {


// One pread/pwrite at a remote address; the offset of /proc/PID/mem is the
// address itself, which does not fit off_t above 2^63 (kernel space anyway).
template <typename Io>
ssize_t transfer(RemoteAddr address, Io io) {
  if (address.value() > static_cast<uint64_t>(INT64_MAX)) {
    errno = EIO;
    return -1;
  }
  for (;;) {
    ssize_t n = io(static_cast<off_t>(address.value()));
    if (n < 0 && errno == EINTR) continue;
    return n;
  }
}

// The most one call moves. The kernel copies /proc/PID/mem a page at a time,
// and where it is built without forced preemption (this VM's is configured
// CONFIG_PREEMPT_NONE) another task waiting for the CPU gets it only when the
// call returns. A SCHED_FIFO thread sharing the CPU with reads of 1 MiB (a
// whole stack) waited up to 1.9 ms, 6 times over 1 ms in 10 s; with 64 KiB
// calls, up to 0.5 ms.
constexpr size_t kMostPerCall = 64 * 1024;

ssize_t read_at(int fd, RemoteAddr address, uint8_t* buffer, size_t size) {
  size = std::min(size, kMostPerCall);
  return transfer(address, [&](off_t offset) { return pread(fd, buffer, size, offset); });
}

ssize_t write_at(int fd, RemoteAddr address, const uint8_t* buffer, size_t size) {
  size = std::min(size, kMostPerCall);
  return transfer(address, [&](off_t offset) { return pwrite(fd, buffer, size, offset); });
}

}  // namespace

Memory::Memory(pid_t pid) : pid_(pid) {
  std::string path = fmt::format("/proc/{}/mem", pid);
  fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0 && (errno == EACCES || errno == EPERM || errno == EROFS)) fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) throw TargetGone(fmt::format("process {} does not exist", pid));
    fail("process {}: cannot open {}: {} (run as root or as the target's user with ptrace allowed)", pid, path,
         errno_text(err));
  }
}

Memory::Memory(Memory&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), fd_(std::exchange(other.fd_, -1)) {}

Memory& Memory::operator=(Memory&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    pid_ = std::exchange(other.pid_, -1);
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

Memory::~Memory() {
  if (fd_ >= 0) close(fd_);
}

void Memory::read(RemoteAddr address, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    RemoteAddr at = address + static_cast<int64_t>(done);
    ssize_t n = read_at(fd_, at, out.data() + done, out.size() - done);
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      // A dead process reads as end of file.
      if (!process_alive(pid_)) throw TargetGone(fmt::format("process {} exited", pid_));
      fail("process {}: cannot read {} bytes at {}: {}", pid_, out.size() - done, at, errno_text(err));
    }
    done += static_cast<size_t>(n);
  }
}

std::vector<uint8_t> Memory::read(RemoteAddr address, size_t size) const {
  std::vector<uint8_t> bytes(size);
  read(address, bytes);
  return bytes;
}

size_t Memory::read_partial(RemoteAddr address, std::span<uint8_t> out) const {
  // The kernel may stop a long read at the first bad page or fail it whole;
  // going page by page after a failure finds exactly where readability ends.
  size_t done = 0;
  while (done < out.size()) {
    RemoteAddr at = address + static_cast<int64_t>(done);
    ssize_t n = read_at(fd_, at, out.data() + done, out.size() - done);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    size_t to_page_end = kPageSize - (at.value() % kPageSize);
    size_t chunk = std::min(to_page_end, out.size() - done);
    n = read_at(fd_, at, out.data() + done, chunk);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

uint64_t Memory::read_u64(RemoteAddr address) const {
  uint64_t value = 0;
  read(address, std::span(reinterpret_cast<uint8_t*>(&value), sizeof value));
  return value;
}

void Memory::write(RemoteAddr address, std::span<const uint8_t> bytes) const {
  size_t done = 0;
  while (done < bytes.size()) {
    RemoteAddr at = address + static_cast<int64_t>(done);
    ssize_t n = write_at(fd_, at, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      if (err == EBADF) fail("process {}: cannot write at {}: memory was opened read-only", pid_, at);
      if (!process_alive(pid_)) throw TargetGone(fmt::format("process {} exited", pid_));
      fail("process {}: cannot write {} bytes at {}: {}", pid_, bytes.size() - done, at, errno_text(err));
    }
    done += static_cast<size_t>(n);
  }
}

}  // namespace suture::process
