/* A worker calls step() over and over; step() calls pause_briefly(). Two
 * patches stack: "slow" replaces pause_briefly() with one that sleeps 8 s,
 * "outer" replaces step() with one that answers 1000 more. The worker then
 * spends its time asleep in slow's pause_briefly(), called from outer's
 * step(): outer's code is on its stack, beneath a frame of other patch code.
 * Each round prints "worker round R result=N". */
#include "scenario.h"

__attribute__((noinline)) long pause_briefly(long x) {
  scenario_sleep_ms(10);
  return x;
}

__attribute__((noinline)) long step(long x) { return pause_briefly(x) + 1; }

static void *worker(void *arg) {
  (void)arg;
  scenario_name_thread("worker");
  for (long round = 0;; round++) printf("worker round %ld result=%ld\n", round, step(round));
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, worker, NULL);
  for (int tick = 0;; tick++) {
    printf("tick %d\n", tick);
    scenario_sleep_ms(100);
  }
}
