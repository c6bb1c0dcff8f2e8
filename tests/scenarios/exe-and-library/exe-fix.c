/* The executable's exe_part(): 1000 + its old value. */
#include <suture/patch.h>

static int exe_part_v2(int tick) {
  int v = 0;
  for (int t = tick; t > 0; t /= 3) v += t % 3;
  return 1000 + (v * 11) % 100;
}

SUTURE_REPLACE(exe_part, exe_part_v2);
