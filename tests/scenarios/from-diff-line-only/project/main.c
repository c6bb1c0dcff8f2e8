/* Prints "tick N LABEL value=V" every 50 ms. */
#include <stdio.h>
#include <unistd.h>

#include "checks.h"

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    int value = checked_double(logged_step(tick));
    printf("tick %d %s value=%d\n", tick, label(), value);
    usleep(50000);
  }
}
