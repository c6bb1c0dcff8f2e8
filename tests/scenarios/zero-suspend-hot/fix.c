/* compute() answers 6 more. */
#include <suture/patch.h>

extern long mix(long x);

long compute_v2(long x) {
  long s = 0;
  for (long i = 0; i < 4; i++) s += mix(x + i);
  return 2 * s + 7;
}

SUTURE_REPLACE(compute, compute_v2);
