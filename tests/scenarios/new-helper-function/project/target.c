/* Prints "tick N score=S"; score() is what the patch replaces. Unpatched, S is
 * a number below 97. */
#include "scenario.h"

int salt = 11;

__attribute__((noinline)) int score(int tick) {
  unsigned h = (unsigned)tick * 2654435761u + (unsigned)salt;
  return (int)(h % 97);
}

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    printf("tick %d score=%d\n", tick, score(tick));
    scenario_sleep_ms(50);
  }
}
