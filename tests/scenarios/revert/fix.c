/* compute() answers 7000 + the old value. */
#include <suture/patch.h>

extern int base;

static int compute_v2(int tick) {
  int v = tick;
  for (int i = 0; i < 4; i++) v = (v * 31 + base) % 1009;
  return 7000 + v % 100;
}

SUTURE_REPLACE(compute, compute_v2);
