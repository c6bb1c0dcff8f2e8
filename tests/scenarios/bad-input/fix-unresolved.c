/* Calls a function that exists nowhere in the target. */
#include <suture/patch.h>

extern int undefined_helper_xyz(int);

static int compute_v3(int tick) { return undefined_helper_xyz(tick) + 1; }

SUTURE_REPLACE(compute, compute_v3);
