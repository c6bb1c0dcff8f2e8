/* Prints "tick N value=V" every 50 ms. */
#include <stdio.h>
#include <unistd.h>

#include "util.h"

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d\n", tick, compute(tick));
    usleep(50000);
  }
}
