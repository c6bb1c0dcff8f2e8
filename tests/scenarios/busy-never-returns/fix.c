/* Replaces both functions; the spinner's can never take effect safely. */
#include <suture/patch.h>

static void spin_forever_v2(void) {
  for (;;) {
  }
}

static int compute_v2(int tick) { return 1000 + (tick * 7 + 3) % 100; }

SUTURE_REPLACE(spin_forever, spin_forever_v2);
SUTURE_REPLACE(compute, compute_v2);
