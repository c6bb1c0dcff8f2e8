/* step() answers 1000 more. */
#include <suture/patch.h>

extern long pause_briefly(long x);

long step_v2(long x) { return pause_briefly(x) + 1001; }

SUTURE_REPLACE(step, step_v2);
