/* greet() prints "tick N: hello from v1"; the patch replaces it with code that
 * formats and prints a string of its own through libc. */
#include "scenario.h"

__attribute__((noinline)) void greet(int tick) {
  printf("tick %d: hello from v1\n", tick);
}

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    greet(tick);
    scenario_sleep_ms(50);
  }
}
