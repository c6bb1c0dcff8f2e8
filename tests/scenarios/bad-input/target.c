/* Prints "tick N value=V" (V from compute(), below 100 unpatched). tiny_hook()
 * is too short to hold a jump. Built twice: -DOTHER_BUILD gives a program of
 * another build-id. */
#include "scenario.h"

int base = 4;

__attribute__((noinline)) int compute(int tick) {
  int v = tick;
  for (int i = 0; i < 3; i++) v = (v * 29 + base) % 997;
  return v % 100;
}

__attribute__((noinline)) int tiny_hook(void) { return 0; }

int main(void) {
  scenario_init();
#ifdef OTHER_BUILD
  printf("another build\n");
#endif
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d\n", tick + tiny_hook(), compute(tick));
    scenario_sleep_ms(50);
  }
}
