#include "process/syscall-server.h"

#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "common/error.h"

namespace suture::process {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kLook = std::chrono::milliseconds(20);  // how often keep_waiting is asked

// Shared (not FUTEX_PRIVATE_FLAG) operations: the waiter is in another process.
long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout = nullptr) {
  return ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

}  // namespace

SyscallServer::SyscallServer(int fd, RemoteAddr remote) : remote_(remote) {
  page_ = ::mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (page_ == MAP_FAILED) {
    page_ = nullptr;
    fail("cannot map the helper's page: {}", errno_text(errno));
  }
}

SyscallServer::~SyscallServer() {
  if (page_) ::munmap(page_, kPageSize);
}

std::optional<int64_t> SyscallServer::run(long number, const std::array<uint64_t, 6>& args,
                                          std::chrono::microseconds timeout,
                                          const std::function<bool()>& keep_waiting) const {
  std::lock_guard turn(turn_);
  auto* base = static_cast<uint8_t*>(page_);
  auto* request = reinterpret_cast<std::atomic<uint32_t>*>(base + kRequestAt);
  auto* done = reinterpret_cast<std::atomic<uint32_t>*>(base + kDoneAt);
  auto* result = reinterpret_cast<std::atomic<int64_t>*>(base + kResultAt);
  // Written before the request word moves: the helper reads them after it.
  reinterpret_cast<std::atomic<int64_t>*>(base + kNumberAt)->store(number);
  for (size_t i = 0; i < args.size(); ++i)
    reinterpret_cast<std::atomic<uint64_t>*>(base + kArgsAt + 8 * i)->store(args[i]);
  uint32_t asked = request->load() + 1;
  request->store(asked);
  futex(request, FUTEX_WAKE, 1);
  auto deadline = Clock::now() + timeout;
  for (;;) {
    uint32_t seen = done->load();
    if (seen == asked) return result->load();
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero() || (keep_waiting && !keep_waiting())) return std::nullopt;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::min<Clock::duration>(left, kLook)).count();
    timespec wait{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    futex(done, FUTEX_WAIT, seen, &wait);  // returns at once if done moved on meanwhile
  }
}

uint32_t SyscallServer::answered() const {
  return reinterpret_cast<const std::atomic<uint32_t>*>(static_cast<const uint8_t*>(page_) + kDoneAt)->load();
}

}  // namespace suture::process
