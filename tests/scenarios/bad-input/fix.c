/* A good patch: compute() answers 1000 + its old value. */
#include <suture/patch.h>

extern int base;

static int compute_v2(int tick) {
  int v = tick;
  for (int i = 0; i < 3; i++) v = (v * 29 + base) % 997;
  return 1000 + v % 100;
}

SUTURE_REPLACE(compute, compute_v2);
