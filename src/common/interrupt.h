// SIGINT/SIGTERM while suture works on a live process must not leave it half
// patched. The handlers only raise a flag (installed without SA_RESTART, so a
// blocking wait returns EINTR); long operations poll it at safe points and throw
// Interrupted, which unwinds through the undo log.
#pragma once

namespace suture {

// Installs the handlers for SIGINT, SIGTERM and SIGHUP. Idempotent.
void install_interrupt_handlers();

// True once one of those signals arrived.
bool interrupt_requested();

// Throws Interrupted when interrupt_requested().
void check_interrupt();

// For tests: forget an earlier request.
void clear_interrupt();

// While one is alive, check_interrupt() does not throw: undoing changes to the
// target must run to the end even though the user asked us to stop.
class InterruptShield {
 public:
  InterruptShield();
  ~InterruptShield();
  InterruptShield(const InterruptShield&) = delete;
  InterruptShield& operator=(const InterruptShield&) = delete;
};

}  // namespace suture
