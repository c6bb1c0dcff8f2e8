/* Prints "tick N GREETING/MOOD" every 50 ms. */
#include <stdio.h>
#include <unistd.h>

#include "greet.h"

__attribute__((noinline)) const char *mood(int tick) { return tick % 2 ? "calm" : "quiet"; }

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    printf("tick %d %s/%s\n", tick, greeting(), mood(tick));
    usleep(50000);
  }
}
