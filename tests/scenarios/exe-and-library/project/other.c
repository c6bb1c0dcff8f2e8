/* Another program, only there to have a patch that matches nothing. */
#include <stdio.h>

__attribute__((noinline)) int exe_part(int tick) {
  int v = 0;
  for (int t = tick; t > 0; t /= 5) v += t % 5;
  return v;
}

int main(void) { return printf("%d\n", exe_part(3)) < 0; }
