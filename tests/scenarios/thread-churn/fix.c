/* compute() answers 9000 + its old value. */
#include <suture/patch.h>

extern int base;

static int compute_v2(int x) {
  int v = x;
  for (int i = 0; i < 3; i++) v = (v * 17 + base) % 1013;
  return 9000 + v % 100;
}

SUTURE_REPLACE(compute, compute_v2);
