#include "engine/patch-region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/error.h"
#include "process/maps.h"

namespace suture::engine {
namespace {

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

void check_result(int64_t result, const char* what) {
  if (result < 0 && result > -4096) fail("{} in the target failed: {}", what, errno_text(static_cast<int>(-result)));
}

}  // namespace

void unmap_region(process::Tracee& tracee, RemoteRange range) {
  check_result(tracee.brief_syscall(SYS_munmap, range.start.value(), range.size), "munmap");
}

PatchRegion::PatchRegion(process::Tracee& tracee, UndoLog& undo, RemoteRange near, uint64_t size,
                         const std::string& name)
    : tracee_(tracee), remote_fd_(std::make_shared<int>(-1)) {
  // 1. reserve
  auto maps = process::read_maps(tracee.pid());
  auto where = process::find_free_near(maps, near, size);
  if (!where) fail("no free address space within 2 GiB of {}..{} for {} bytes of patch", near.start, near.end(), size);
  int64_t got = tracee.brief_syscall(SYS_mmap, where->value(), size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, static_cast<uint64_t>(-1), 0);
  check_result(got, "mmap (reserving patch space)");
  range_ = {RemoteAddr(static_cast<uint64_t>(got)), size};
  undo.push(fmt::format("unmap patch region at {}", range_.start), [&tracee, r = range_] { unmap_region(tracee, r); });
  if (range_.start != *where) {
    // An old kernel took MAP_FIXED_NOREPLACE as a hint; the undo unmaps it.
    fail("the target's kernel placed patch space at {} instead of {}", range_.start, *where);
  }

  // 2. memfd, named from a string written into the placeholder
  std::vector<uint8_t> name_bytes(name.begin(), name.end());
  name_bytes.push_back(0);
  tracee.memory().write(range_.start, name_bytes);
  int64_t fd = tracee.brief_syscall(SYS_memfd_create, range_.start.value(), MFD_CLOEXEC);
  check_result(fd, "memfd_create");
  *remote_fd_ = static_cast<int>(fd);
  // The undo owns a share of the descriptor number: it may run after this object is gone.
  undo.push("close the patch's memfd in the target", [&tracee, remote_fd = remote_fd_] {
    if (*remote_fd >= 0) tracee.brief_syscall(SYS_close, static_cast<uint64_t>(*remote_fd));
    *remote_fd = -1;
  });
  std::string local_path = fmt::format("/proc/{}/fd/{}", tracee.pid(), *remote_fd_);
  local_fd_ = ::open(local_path.c_str(), O_RDWR | O_CLOEXEC);
  if (local_fd_ < 0) fail("cannot open {}: {}", local_path, errno_text(errno));
  if (::ftruncate(local_fd_, static_cast<off_t>(size)) != 0) fail("cannot size the patch memfd: {}", errno_text(errno));
}

PatchRegion::~PatchRegion() {
  if (local_fd_ >= 0) ::close(local_fd_);
}

void PatchRegion::write(uint64_t offset, const std::vector<uint8_t>& bytes) {
  if (offset + bytes.size() > range_.size) fail("internal: patch part exceeds its region");
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(local_fd_, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("cannot write the patch memfd: {}", errno_text(errno));
    done += static_cast<size_t>(n);
  }
}

void PatchRegion::map(const std::vector<RegionPart>& parts) {
  for (const auto& part : parts) {
    if (part.size == 0) continue;
    RemoteAddr at = range_.start + static_cast<int64_t>(part.offset);
    int64_t got = tracee_.brief_syscall(SYS_mmap, at.value(), part.size, static_cast<uint64_t>(part.prot),
                                 MAP_PRIVATE | MAP_FIXED, static_cast<uint64_t>(*remote_fd_), part.offset);
    check_result(got, "mmap (patch part)");
    if (RemoteAddr(static_cast<uint64_t>(got)) != at) fail("patch part mapped at {:#x}, not {}", got, at);
  }
  int64_t closed = tracee_.brief_syscall(SYS_close, static_cast<uint64_t>(*remote_fd_));
  check_result(closed, "close (patch memfd)");
  *remote_fd_ = -1;
}

}  // namespace suture::engine
