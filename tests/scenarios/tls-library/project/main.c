/* Three workers call libtlsdemo.so: lib_set() fills the library's
 * thread-locals, lib_report() prints. */
#include "scenario.h"

void lib_set(int worker, int tick);
void lib_report(int worker, int tick);

static void *worker(void *arg) {
  int k = (int)(long)arg;
  for (int tick = 0;; tick++) {
    lib_set(k, tick);
    lib_report(k, tick);
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
