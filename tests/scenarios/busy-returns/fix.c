/* slow_work() still takes its time (about a second, so reverting meets a thread
 * inside the new code too) but answers 100000 + R. */
#include <time.h>

#include <suture/patch.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long slow_work_v2(int round) {
  double start = now();
  while (now() - start < 1.0) {
    struct timespec nap = {0, 2000000};
    nanosleep(&nap, NULL);
  }
  return 100000L + round;
}

SUTURE_REPLACE(slow_work, slow_work_v2);
