/* Prints "tick N a=A b=B" from the two files' same-named static functions. */
#include "scenario.h"

int a_next(void);
int b_next(void);

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    int a = a_next();
    int b = b_next();
    printf("tick %d a=%d b=%d\n", tick, a, b);
    scenario_sleep_ms(50);
  }
}
