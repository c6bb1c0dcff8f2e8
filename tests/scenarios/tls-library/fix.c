/* lib_report() that also prints the calling thread's thread-locals of the
 * library. */
#include <stdio.h>

#include <suture/patch.h>

extern __thread int lib_tls_value;
extern __thread char lib_tls_label[16];

static void lib_report_v2(int worker, int tick) {
  printf("worker %d tick %d tls=%d label=%s\n", worker, tick, lib_tls_value, lib_tls_label);
}

SUTURE_REPLACE(lib_report, lib_report_v2);
