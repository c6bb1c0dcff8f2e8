/* A worker thread spends ~1.5 s of every call inside slow_work() (computing,
 * reading the clock, napping 1 ms at a time), then prints
 * "worker round R result=X" and rests 50 ms. The main thread prints ticks.
 * Unpatched, X = 2 * R. */
#include "scenario.h"

volatile unsigned long sink;

__attribute__((noinline)) long slow_work(int round) {
  double start = scenario_now();
  unsigned long acc = (unsigned long)round;
  while (scenario_now() - start < 1.5) {
    for (int i = 0; i < 2000; i++) acc = acc * 6364136223846793005ul + (unsigned long)i;
    scenario_sleep_ms(1);
  }
  sink = acc;
  return 2L * round;
}

static void *worker(void *arg) {
  (void)arg;
  scenario_name_thread("worker");
  for (int round = 0;; round++) {
    printf("worker round %d result=%ld\n", round, slow_work(round));
    scenario_sleep_ms(50);
  }
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  for (int tick = 0;; tick++) {
    printf("tick %d\n", tick);
    scenario_sleep_ms(50);
  }
}
