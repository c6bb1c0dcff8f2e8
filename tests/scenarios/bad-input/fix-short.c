/* Replaces tiny_hook(), whose 3 bytes cannot hold a 5-byte jump. */
#include <suture/patch.h>

static int tiny_hook_v2(void) { return 1; }

SUTURE_REPLACE(tiny_hook, tiny_hook_v2);
