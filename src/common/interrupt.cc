#include "common/interrupt.h"

#include <csignal>

#include "common/error.h"

namespace suture {
namespace {

volatile sig_atomic_t g_interrupted = 0;  // the one piece of global state: a signal flag
int g_shields = 0;                        // and whether undo is running (single-threaded tool)

void on_signal(int) { g_interrupted = 1; }

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: waits return EINTR so we notice promptly
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
}

bool interrupt_requested() { return g_interrupted != 0; }

void check_interrupt() {
  if (g_interrupted && g_shields == 0) throw Interrupted("interrupted by signal; changes to the target were undone");
}

void clear_interrupt() { g_interrupted = 0; }

InterruptShield::InterruptShield() { ++g_shields; }
InterruptShield::~InterruptShield() { --g_shields; }

}  // namespace suture
