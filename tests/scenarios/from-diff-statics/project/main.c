/* Prints "tick N LABEL count=C" every 50 ms. */
#include <stdio.h>
#include <unistd.h>

#include "util.h"

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    int count = tick_count();
    printf("tick %d %s count=%d\n", tick, label(), count);
    usleep(50000);
  }
}
