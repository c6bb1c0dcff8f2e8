/* The target of the steady-state cost benchmark (run.py drives it).
 *
 * Problem. Once a function is patched, every call to it runs the old entry's
 * `jmp rel32` first (after `endbr64`), and, when the replacement may write
 * registers that gcc's callers rely on the old function leaving alone
 * (-fipa-ra), a preserving thunk that saves them, calls the replacement and
 * restores them. What does that cost a hot function, in calls per second?
 *
 * Approach. Three functions with the same body: hot_plain (never patched),
 * hot_jump (patched by a replacement that writes nothing new: entry jump only)
 * and hot_thunk (patched by a replacement that may call out on a rare path:
 * entry jump to a thunk). Each is called in its own loop, one call per
 * iteration, each call's argument depending on the previous result so calls do
 * not overlap (the latency of call + body + return, the worst case for an
 * extra jump). The loops are run in rounds, the three in rotating order within
 * a round so slow phases of a noisy machine hit all three alike; each loop is
 * timed in the thread's own CPU time (CLOCK_THREAD_CPUTIME_ID), so time spent
 * descheduled on a shared machine does not count; the median over rounds is
 * reported. The same process measures before the patch (so each
 * function is compared with itself: code alignment differs between the three)
 * and after it, reading one line on stdin in between, while run.py applies the
 * patch; hot_plain, measured in the same rounds, shows how much the machine
 * itself drifted between the two phases.
 *
 * Rejected: calling through a function pointer (patched functions are mostly
 * called directly, and an indirect call would hide the jump's cost in the
 * indirect branch's); separate processes for patched and unpatched (layout and
 * machine drift would be larger than the effect).
 *
 * Output: one JSON line per phase, {"phase":..,"ns_per_call":{"hot_plain":[..],..}},
 * with every round's value; "ready" between the phases.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Calls with this argument take the rare path: a counter here, a call in the
 * thunk's replacement. The loops never pass it (see loop below). */
#define RARE 0xFFFFFFFFu

unsigned long hot_rare_calls;

__attribute__((noinline, noclone)) void hot_rare(unsigned x) {
  hot_rare_calls += x & 1;
}

/* A small integer hash: about ten instructions, leaf, writes only rax and one
 * scratch register, so callers may keep their own values in the others. */
#define HOT_BODY(x)                        \
  do {                                     \
    if (__builtin_expect((x) == RARE, 0)) \
      ++hot_rare_calls;                    \
    (x) ^= (x) >> 16;                      \
    (x) *= 0x7feb352du;                    \
    (x) ^= (x) >> 15;                      \
    (x) *= 0x846ca68bu;                    \
    (x) ^= (x) >> 16;                      \
    return (x);                            \
  } while (0)

__attribute__((noinline, noclone)) unsigned hot_plain(unsigned x) { HOT_BODY(x); }
__attribute__((noinline, noclone)) unsigned hot_jump(unsigned x) { HOT_BODY(x); }
__attribute__((noinline, noclone)) unsigned hot_thunk(unsigned x) { HOT_BODY(x); }

/* One loop per function, so each is a direct call that gcc's register
 * allocation sees (the thunk case needs callers that rely on -fipa-ra). The
 * argument is kept below RARE by the mask. */
#define LOOP(F)                                                   \
  __attribute__((noinline)) static unsigned loop_##F(long n) {    \
    unsigned acc = 1;                                             \
    for (long i = 0; i < n; ++i) acc = F((acc + (unsigned)i) & 0x7fffffffu); \
    return acc;                                                   \
  }
LOOP(hot_plain)
LOOP(hot_jump)
LOOP(hot_thunk)

static const char* const names[] = {"hot_plain", "hot_jump", "hot_thunk"};
static unsigned (*const loops[])(long) = {loop_hot_plain, loop_hot_jump, loop_hot_thunk};
enum { NFUNC = 3 };

/* The calling thread's CPU time, in seconds. */
static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile unsigned sink;

/* ROUNDS rounds of N calls to each function; prints the phase's JSON line. */
static void measure(const char* phase, int rounds, long n) {
  double ns[NFUNC][rounds];
  for (int r = 0; r < rounds; ++r)
    for (int k = 0; k < NFUNC; ++k) {
      int f = (r + k) % NFUNC;
      double t = now_s();
      sink = loops[f](n);
      ns[f][r] = (now_s() - t) * 1e9 / (double)n;
    }
  printf("{\"phase\":\"%s\",\"calls_per_round\":%ld,\"ns_per_call\":{", phase, n);
  for (int f = 0; f < NFUNC; ++f) {
    printf("%s\"%s\":[", f ? "," : "", names[f]);
    for (int r = 0; r < rounds; ++r) printf("%s%.4f", r ? "," : "", ns[f][r]);
    printf("]");
  }
  printf("},\"rare_calls\":%lu}\n", hot_rare_calls);
  fflush(stdout);
}

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ROUNDS CALLS_PER_ROUND\n", argv[0]);
    return 2;
  }
  int rounds = atoi(argv[1]);
  long n = atol(argv[2]);
  if (rounds < 1 || rounds > 1000 || n < 1) {
    fprintf(stderr, "%s: ROUNDS must be 1..1000 and CALLS_PER_ROUND positive\n", argv[0]);
    return 2;
  }
  measure("unpatched", rounds, n);
  printf("ready\n");
  fflush(stdout);
  char line[64];
  if (!fgets(line, sizeof line, stdin)) return 1; /* run.py applies the patch meanwhile */
  measure("patched", rounds, n);
  return 0;
}
