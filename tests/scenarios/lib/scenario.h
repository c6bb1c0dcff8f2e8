/* What every scenario target shares: ordinary programs with a few habits that
 * let the runner judge them from their output alone.
 *
 *  - stdout is line buffered, so the log the runner reads is current;
 *  - signals a live patch must never cause (a leaked SIGSTOP/SIGCONT pair, the
 *    user's SIGINT to suture forwarded to us) print "stray signal N" and go on;
 *  - a fault (a bad jump, a leftover int3) prints "crash: signal N" and dies by
 *    that signal as it would have, so the runner sees the crash and the reason;
 *  - a sleep cut short by EINTR prints "stray EINTR": a thread held inside a
 *    restartable system call must resume as if nothing happened.
 * The runner fails a scenario whose log has a "stray" or "crash" line.
 */
#ifndef SCENARIO_H
#define SCENARIO_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* async-signal-safe "PREFIX N\n" */
static void scenario_say_signal(const char *prefix, int sig) {
  char line[64];
  size_t n = strlen(prefix);
  memcpy(line, prefix, n);
  if (sig >= 10) line[n++] = (char)('0' + sig / 10);
  line[n++] = (char)('0' + sig % 10);
  line[n++] = '\n';
  (void)!write(STDOUT_FILENO, line, n);
}

static void scenario_on_stray_signal(int sig) { scenario_say_signal("stray signal ", sig); }

static void scenario_on_fault(int sig) {
  scenario_say_signal("crash: signal ", sig);
  signal(sig, SIG_DFL);
  raise(sig);
}

static inline void scenario_init(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);

  struct sigaction stray;
  memset(&stray, 0, sizeof stray);
  stray.sa_handler = scenario_on_stray_signal;
  stray.sa_flags = SA_RESTART;
  sigemptyset(&stray.sa_mask);
  const int stray_signals[] = {SIGINT, SIGQUIT, SIGHUP, SIGCONT, SIGUSR1, SIGUSR2, SIGTSTP};
  for (size_t i = 0; i < sizeof stray_signals / sizeof stray_signals[0]; i++)
    sigaction(stray_signals[i], &stray, NULL);

  struct sigaction fault;
  memset(&fault, 0, sizeof fault);
  fault.sa_handler = scenario_on_fault;
  sigemptyset(&fault.sa_mask);
  const int faults[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT};
  for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigaction(faults[i], &fault, NULL);
}

/* A plain nanosleep: the kernel restarts it across ptrace stops, so EINTR
 * means someone delivered a signal or broke the restart. */
static inline void scenario_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  if (nanosleep(&ts, NULL) != 0) printf("stray EINTR: nanosleep: %s\n", strerror(errno));
}

static inline double scenario_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void scenario_name_thread(const char *name) { pthread_setname_np(pthread_self(), name); }

#endif
