/* libpart.so's lib_part() and lib_spin(); the second is always busy, so this
 * patch is always refused. */
#include <suture/patch.h>

static int lib_part_v3(int tick) { return 3000 + tick % 100; }
static void lib_spin_v2(void) {
  for (;;) {
  }
}

SUTURE_REPLACE(lib_part, lib_part_v3);
SUTURE_REPLACE(lib_spin, lib_spin_v2);
