/* report() that also prints the calling thread's thread-locals of the
 * executable, reached with plain extern declarations. */
#include <stdio.h>

#include <suture/patch.h>

extern __thread int tls_value;
extern __thread char tls_label[16];

static void report_v2(int worker, int tick) {
  printf("worker %d tick %d tls=%d label=%s\n", worker, tick, tls_value, tls_label);
}

SUTURE_REPLACE(report, report_v2);
