/* Four threads call compute() and print "tNAME tick N value=V"; unpatched,
 * V is below 100. */
#include "scenario.h"

int base = 5;

__attribute__((noinline)) int compute(int tick) {
  int v = tick;
  for (int i = 0; i < 4; i++) v = (v * 31 + base) % 1009;
  return v % 100;
}

static void *worker(void *arg) {
  long id = (long)arg;
  char name[16];
  snprintf(name, sizeof name, "worker-%ld", id);
  scenario_name_thread(name);
  for (int tick = 0;; tick++) {
    printf("worker %ld tick %d value=%d\n", id, tick, compute(tick));
    scenario_sleep_ms(50);
  }
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t[4];
  for (long i = 0; i < 4; i++) pthread_create(&t[i], NULL, worker, (void *)i);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
  return 0;
}
