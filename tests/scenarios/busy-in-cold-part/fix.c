#include <suture/patch.h>

static int handle_v2(int x) {
  if (x < 0) return -1;
  return 1000 + x % 97;
}
SUTURE_REPLACE(handle, handle_v2);
