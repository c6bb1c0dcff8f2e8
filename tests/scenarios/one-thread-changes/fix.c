/* step_a() answers 5000 + its old value; step_b() is left alone. */
#include <suture/patch.h>

static int step_a_v2(int n) {
  int v = 0;
  for (int i = 0; i <= n % 8; i++) v += i * 3;
  return 5000 + v % 100;
}

SUTURE_REPLACE(step_a, step_a_v2);
