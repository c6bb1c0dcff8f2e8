/* Prints "tick N LABEL value=V calls=C" every 50 ms. */
#include <stdio.h>
#include <unistd.h>

#include "util.h"

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    int value = compute(tick);
    printf("tick %d %s value=%d calls=%d\n", tick, label(), value, call_count());
    usleep(50000);
  }
}
