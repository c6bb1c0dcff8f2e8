/* Three workers; each keeps per-thread state in the executable's thread-locals
 * (tls_value in .tbss, tls_label in .tdata) and calls report(), which the patch
 * replaces with one that prints them: "worker K tick N tls=V label=wK", where
 * V = 1000 * K + N % 1000. */
#include "scenario.h"

__thread int tls_value;
__thread char tls_label[16] = "unset";

__attribute__((noinline)) void report(int worker, int tick) {
  printf("worker %d tick %d\n", worker, tick);
}

static void *worker(void *arg) {
  int k = (int)(long)arg;
  snprintf(tls_label, sizeof tls_label, "w%d", k);
  scenario_name_thread(tls_label);
  for (int tick = 0;; tick++) {
    tls_value = 1000 * k + tick % 1000;
    report(k, tick);
    scenario_sleep_ms(50);
  }
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t[3];
  for (long k = 1; k <= 3; k++) pthread_create(&t[k - 1], NULL, worker, (void *)k);
  for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
  return 0;
}
