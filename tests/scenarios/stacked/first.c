/* The first patch: V moves to 2000 + the old value. */
#include <suture/patch.h>

extern int base;

static int compute_first(int tick) {
  unsigned v = (unsigned)tick * 40503u + (unsigned)base;
  return 2000 + (int)(v % 100);
}

SUTURE_REPLACE(compute, compute_first);
