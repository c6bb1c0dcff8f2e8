/* Prints "tick N value=V" every 50 ms; V comes from compute(), the function the
 * patch replaces. Unpatched, V is below 100. */
#include "scenario.h"

int base = 3;

__attribute__((noinline)) int compute(int tick) {
  int digits = 0;
  for (int t = tick; t > 0; t /= 10) digits += t % 10;
  return (digits * base + tick) % 100;
}

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d\n", tick, compute(tick));
    scenario_sleep_ms(50);
  }
}
