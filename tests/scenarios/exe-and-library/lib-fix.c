/* libpart.so's lib_part(): 2000 + its old value. */
#include <suture/patch.h>

static int lib_part_v2(int tick) {
  unsigned v = (unsigned)tick * 2654435761u;
  return 2000 + (int)((v >> 7) % 100);
}

SUTURE_REPLACE(lib_part, lib_part_v2);
