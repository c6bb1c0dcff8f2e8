/* A "spinner" thread sits in spin_forever(); the program ends by itself (exit
 * status 0) 0.8 s after it starts, while suture waits for the spinner. */
#include "scenario.h"

volatile unsigned long spins;

__attribute__((noinline)) void spin_forever(void) {
  for (;;) {
    for (int i = 0; i < 1000; i++) spins = spins + 1;
    scenario_sleep_ms(5);
  }
}

static void *spinner(void *arg) {
  (void)arg;
  scenario_name_thread("spinner");
  spin_forever();
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, spinner, NULL);
  double start = scenario_now();
  for (int tick = 0; scenario_now() - start < 0.8; tick++) {
    printf("tick %d\n", tick);
    scenario_sleep_ms(50);
  }
  printf("exiting on my own\n");
  return 0;
}
