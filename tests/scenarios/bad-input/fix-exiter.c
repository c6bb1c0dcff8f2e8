/* For the exiter: replaces the function its spinner never leaves. */
#include <suture/patch.h>

static void spin_forever_v2(void) {
  for (;;) {
  }
}

SUTURE_REPLACE(spin_forever, spin_forever_v2);
