/* compute() now answers 1000 more: the same digit sum, moved to the thousands. */
#include <suture/patch.h>

extern int base; /* the target's global */

int compute_v2(int tick) {
  int digits = 0;
  for (int t = tick; t > 0; t /= 10) digits += t % 10;
  return 1000 + (digits * base + tick) % 100;
}

SUTURE_REPLACE(compute, compute_v2);
