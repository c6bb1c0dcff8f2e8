/* libgreet.so's lib_compute() answers 4000 + its old value. */
#include <suture/patch.h>

extern int lib_base;

static int lib_compute_v2(int tick) {
  int v = tick ^ lib_base;
  for (int i = 0; i < 3; i++) v = (v * 13 + 7) % 1000;
  return 4000 + v % 100;
}

SUTURE_REPLACE(lib_compute, lib_compute_v2);
