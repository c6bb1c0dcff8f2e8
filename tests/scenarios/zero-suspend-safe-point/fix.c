/* Both steps answer 10: a request must see both from one version. */
#include <suture/patch.h>

long step_a_v2(long id) {
  asm volatile("" : "+r"(id));
  return 10 + (id & 0);
}

long step_b_v2(long id) {
  asm volatile("" : "+r"(id));
  return 10 + (id & 0);
}

SUTURE_REPLACE(step_a, step_a_v2);
SUTURE_REPLACE(step_b, step_b_v2);
