/* Prints "tick N lib=V" with V from libgreet.so's lib_compute(). */
#include "scenario.h"

int lib_compute(int tick);

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    printf("tick %d lib=%d\n", tick, lib_compute(tick));
    scenario_sleep_ms(50);
  }
}
