// System calls in the target's address space without a ptrace stop, made by
// the helper thread (process/helper-thread.h).
//
// Run through ptrace, one system call interrupts the helper, swaps its
// registers, single-steps a `syscall` and swaps them back: four context
// switches and eight ptrace requests, 150-320 us on a 2-core VM, with suture
// raised above the target for most of it (on the server's CPU, that is time
// the server does not run). The core syncs of an entry switch come three at a
// time while calls of the functions being switched trap; mapping, protecting
// and unmapping a patch come a dozen at a time. Instead, the helper waits on a
// futex in a page of a memfd that suture maps too: suture writes the call's
// number and arguments, bumps the request word and wakes it; the helper makes
// the call, stores the result, bumps the done word and wakes suture. Nothing
// is stopped, no signal is sent (a target running as another user may not
// signal suture back), and if suture dies the helper just keeps waiting.
//
// The page: request (u32) at 0, done (u32) at 4, result (i64) at 8, number
// (i64) at 16, the six arguments (u64) from 24. The loop itself is the
// helper's code (process/helper-thread.cc).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>

#include "common/page.h"
#include "common/remote-addr.h"

namespace suture::process {

class SyscallServer {
 public:
  static constexpr uint64_t kRequestAt = 0, kDoneAt = 4, kResultAt = 8, kNumberAt = 16, kArgsAt = 24,
                            kPageSize = suture::kPageSize;
  // A number no system call has: the helper answers 0, unmaps the page and
  // exits. Nothing may be asked after it.
  static constexpr long kLeave = -2;

  // `fd` is suture's descriptor of the shared memfd (mapped here, then closed);
  // `remote` is where the target maps it. Throws Error if it cannot be mapped.
  SyscallServer(int fd, RemoteAddr remote);
  SyscallServer(const SyscallServer&) = delete;
  SyscallServer& operator=(const SyscallServer&) = delete;
  ~SyscallServer();

  RemoteAddr remote() const { return remote_; }
  // One system call by the helper: its result (-errno on failure), or nullopt
  // if the helper did not answer in `timeout` or `keep_waiting` (asked every
  // 20 ms while it waits) said to stop; the helper may still make the call.
  // Callers on several threads take turns.
  std::optional<int64_t> run(long number, const std::array<uint64_t, 6>& args, std::chrono::microseconds timeout,
                             const std::function<bool()>& keep_waiting = {}) const;
  // How many calls the helper has made for this page so far.
  uint32_t answered() const;

 private:
  void* page_ = nullptr;
  RemoteAddr remote_;
  mutable std::mutex turn_;
};

}  // namespace suture::process
