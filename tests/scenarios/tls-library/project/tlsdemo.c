/* libtlsdemo.so: per-thread state in the library's own thread-locals, and
 * lib_report(), which the patch replaces. */
#include <stdio.h>

__thread int lib_tls_value;
__thread char lib_tls_label[16] = "unset";

void lib_set(int worker, int tick) {
  lib_tls_value = 1000 * worker + tick % 1000;
  snprintf(lib_tls_label, sizeof lib_tls_label, "lib-w%d", worker);
}

__attribute__((noinline)) void lib_report(int worker, int tick) {
  printf("worker %d tick %d\n", worker, tick);
}
