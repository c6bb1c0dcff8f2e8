/* The second patch, on top of the first, for the same function: 3000 + the
 * old value. */
#include <suture/patch.h>

extern int base;

static int compute_second(int tick) {
  unsigned v = (unsigned)tick * 40503u + (unsigned)base;
  return 3000 + (int)(v % 100);
}

SUTURE_REPLACE(compute, compute_second);
