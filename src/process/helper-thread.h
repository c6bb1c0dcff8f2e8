// Suture's own thread inside the target, for the system calls suture makes
// there while the target runs (mmap, mprotect, membarrier, munmap).
//
// Without it each such call holds one of the target's threads: even a thread
// blocked in epoll_wait serves requests the moment one arrives, and one call,
// membarrier's first SYNC_CORE registration, waits for an RCU grace period
// (milliseconds). With it, every call runs on a thread that serves no one.
//
// Creating it holds one target thread only long enough to send it elsewhere
// (Tracee::divert): a trampoline, written beforehand into the zero padding
// after an object's code (mapped executable, never run), makes that thread
// block signals, clone() and go back to exactly where it was, on its own time.
// The child is the helper: a bare kernel thread of the process that blocks
// every signal and runs only system calls. It sets itself up with no stop:
// names itself, maps the page of process/syscall-server.h, and serves system
// calls from it, waiting in futex(), where suture finds it and reads the page's
// address in /proc. When suture holds threads, or the page could not be made,
// suture single-steps system calls in it through ptrace instead. It is no
// pthread (glibc does not know it) and shares the TLS of the thread that
// created it, so it never runs a function of the target; see Tracee::Work. At
// the end, asked through its page, it unmaps the page and exits, again with no
// stop (without the page: held, it is sent to a pause() loop and ended), and
// the padding gets its zeros back; if suture dies first, it stays blocked in
// futex() until the process ends, harming nothing.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "common/remote-addr.h"
#include "process/syscall-server.h"
#include "process/tracee.h"

namespace suture::process {

class HelperThread {
 public:
  // Starts the helper in `tracee`'s process (nothing may be held) and makes it
  // the tracee's helper. If the target cannot have one (seccomp refuses clone,
  // no address space, ...) the tracee keeps using its own threads and
  // why_not() says why.
  explicit HelperThread(Tracee& tracee);
  HelperThread(const HelperThread&) = delete;
  HelperThread& operator=(const HelperThread&) = delete;
  // Unmaps its page and ends it; never throws (a failure is a warning).
  ~HelperThread();

  pid_t tid() const { return tid_; }
  const std::string& why_not() const { return why_not_; }
  // System calls without a stop; null if the helper could not map its page
  // (then why_not_served() says why, and they go through ptrace).
  const SyscallServer* server() const { return server_.get(); }
  const std::string& why_not_served() const { return why_not_served_; }

 private:
  void start();
  void start_serving(RemoteAddr page, int remote_fd);
  void park();
  bool leave_unseen();
  void stop();

  Tracee& tracee_;
  pid_t tid_ = 0;
  pid_t creator_ = 0;  // the thread sent through the trampoline
  RemoteRange site_;   // the trampoline, while its bytes are ours
  std::string why_not_;
  std::unique_ptr<SyscallServer> server_;
  std::string why_not_served_;
};

}  // namespace suture::process
