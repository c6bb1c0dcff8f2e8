#include "common/read-file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "common/error.h"

namespace suture {
namespace {

// The most one read() copies. A read() of a large file can copy megabytes in
// the kernel before another task gets the CPU where the kernel is built
// without forced preemption (this VM's is configured CONFIG_PREEMPT_NONE). A
// SCHED_FIFO thread sharing the CPU with whole-file reads of a 9 MB binary
// waited up to 1.0-4.7 ms (1 to 42 times over 1 ms in 10 s, two runs); with
// 256 KiB reads, up to 0.35 ms. Suture reads the target's objects (ELF files
// of megabytes) while the server runs.
constexpr size_t kMostPerCall = 256 * 1024;

}  // namespace

std::vector<uint8_t> read_whole_file(const std::string& path, uint64_t limit, std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, errno_text(errno));
  std::vector<uint8_t> bytes;
  try {
    struct stat info;
    if (fstat(fd, &info) != 0) fail("{}: cannot stat: {}", path, errno_text(errno));
    if (!S_ISREG(info.st_mode)) fail("{}: not a regular file", path);
    if (static_cast<uint64_t>(info.st_size) > limit)
      fail("{}: {} bytes, too large for {} (at most {})", path, info.st_size, what, limit);
    bytes.resize(static_cast<size_t>(info.st_size));
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t got = ::read(fd, bytes.data() + done, std::min(bytes.size() - done, kMostPerCall));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) fail("{}: cannot read: {}", path, errno_text(errno));
      if (got == 0) break;  // shrank under us: the parsers report the truncation
      done += static_cast<size_t>(got);
    }
    bytes.resize(done);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  return bytes;
}

}  // namespace suture
