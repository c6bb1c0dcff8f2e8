/* A "spinner" thread never leaves spin_forever(); the main thread prints
 * "tick N value=V" with V from compute(). Both functions are in the patch, so
 * a patch applied in part would show in the ticks. */
#define _GNU_SOURCE
#include "scenario.h"

#include <sys/syscall.h>

volatile unsigned long spins;

__attribute__((noinline)) int compute(int tick) { return (tick * 7 + 3) % 100; }

__attribute__((noinline)) void spin_forever(void) {
  for (;;) {
    for (int i = 0; i < 1000; i++) spins = spins + 1;
    scenario_sleep_ms(5);
  }
}

__attribute__((noinline)) static void *spinner_main(void *arg) {
  (void)arg;
  scenario_name_thread("spinner");
  printf("spinner tid=%ld\n", (long)syscall(SYS_gettid));
  spin_forever();
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, spinner_main, NULL);
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d\n", tick, compute(tick));
    scenario_sleep_ms(50);
  }
}
