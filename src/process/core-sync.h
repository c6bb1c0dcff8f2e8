// Serializing the cores that run the target (membarrier
// PRIVATE_EXPEDITED_SYNC_CORE in the target's address space) without a ptrace
// stop.
//
// Run through ptrace, one such call interrupts the helper thread, swaps its
// registers, single-steps a `syscall` and swaps them back: four context
// switches and eight ptrace requests, 150-250 us on a 2-core VM, three times
// per entry switch, every one of them while calls of the functions being
// switched trap. Instead, the helper waits on a futex in a page of a memfd
// that suture maps too: suture bumps the request word and wakes it, the helper
// makes the call, stores the result, bumps the done word and wakes suture.
// Nothing is stopped, no signal is sent (a target running as another user may
// not signal suture back), and if suture dies the helper just keeps waiting.
//
// The page: request (u32) at 0, done (u32) at 4, result (i64) at 8. The loop
// itself is the helper's code (process/helper-thread.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "common/page.h"
#include "common/remote-addr.h"

namespace suture::process {

class CoreSync {
 public:
  static constexpr uint64_t kRequestAt = 0, kDoneAt = 4, kResultAt = 8, kPageSize = suture::kPageSize;

  // `fd` is suture's descriptor of the shared memfd (mapped here, then closed);
  // `remote` is where the target maps it. Throws Error if it cannot be mapped.
  CoreSync(int fd, RemoteAddr remote);
  CoreSync(const CoreSync&) = delete;
  CoreSync& operator=(const CoreSync&) = delete;
  ~CoreSync();

  RemoteAddr remote() const { return remote_; }
  // One membarrier(PRIVATE_EXPEDITED_SYNC_CORE) by the helper: its result
  // (-errno on failure), or nullopt if the helper did not answer in `timeout`.
  // One caller at a time.
  std::optional<int64_t> run(std::chrono::microseconds timeout) const;

 private:
  void* page_ = nullptr;
  RemoteAddr remote_;
};

}  // namespace suture::process
