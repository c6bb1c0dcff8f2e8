/* Prints "tick N value=V rounds=R" every 50 ms; the values come from the
 * vendored library. */
#include <stdio.h>
#include <unistd.h>

#include "vend.h"

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    int value = vend_value(tick);
    printf("tick %d value=%d rounds=%d\n", tick, value, vend_rounds());
    usleep(50000);
  }
}
