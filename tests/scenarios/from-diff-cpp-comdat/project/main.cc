// Prints "tick N LABEL a=A b=B" every 50 ms: A and B are running sums kept in
// two Meter<int> objects whose state must survive the patch.
#include <unistd.h>

#include <cstdio>

#include "meter.h"

int main() {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  for (int tick = 0;; tick++) {
    int a = app::step_a(1);
    int b = app::step_b(1);
    std::printf("tick %d %s a=%d b=%d\n", tick, app::label(), a, b);
    usleep(50000);
  }
}
