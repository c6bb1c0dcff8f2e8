/* Prints "tick N value=V" with V from compute(); unpatched, V is below 100. */
#include "scenario.h"

int base = 9;

__attribute__((noinline)) int compute(int tick) {
  unsigned v = (unsigned)tick * 40503u + (unsigned)base;
  return (int)(v % 100);
}

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d\n", tick, compute(tick));
    scenario_sleep_ms(50);
  }
}
