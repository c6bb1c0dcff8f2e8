// Reading and writing the target's memory through /proc/PID/mem. Writes reach
// read-only text too (the kernel copies the page privately), which is how
// redirects are written; the process need not be stopped for either.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "common/remote-addr.h"

namespace suture::process {

class Memory {
 public:
  explicit Memory(pid_t pid);  // throws TargetGone / Error (permission)
  Memory(Memory&&) noexcept;
  Memory& operator=(Memory&&) noexcept;
  Memory(const Memory&) = delete;
  ~Memory();

  // Reads exactly out.size() bytes; throws Error naming the address on failure.
  void read(RemoteAddr address, std::span<uint8_t> out) const;
  std::vector<uint8_t> read(RemoteAddr address, size_t size) const;
  // Reads as many bytes as are readable (stops at the first unreadable page).
  size_t read_partial(RemoteAddr address, std::span<uint8_t> out) const;
  uint64_t read_u64(RemoteAddr address) const;
  // Writes exactly bytes.size() bytes; throws Error naming the address on failure.
  void write(RemoteAddr address, std::span<const uint8_t> bytes) const;

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
};

}  // namespace suture::process
