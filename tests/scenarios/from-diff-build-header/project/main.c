/* Prints "tick N LABEL value=V" every 50 ms. */
#include <stdio.h>
#include <unistd.h>

#include "calc.h"

__attribute__((noinline)) const char *describe(void) { return CALC_LABEL; }

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    printf("tick %d %s value=%d\n", tick, describe(), calc_next(tick));
    usleep(50000);
  }
}
