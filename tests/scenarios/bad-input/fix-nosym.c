/* Replaces a function the target does not have. */
#include <suture/patch.h>

static int replacement(int x) { return x + 1; }

SUTURE_REPLACE(no_such_function, replacement);
