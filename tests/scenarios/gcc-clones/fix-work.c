/* A hand-written patch for work(), of which gcc kept only a specialised copy:
 * pack refuses it, naming the copy. */
#include <suture/patch.h>
static int work_v2(int x, int mode) { return x * mode; }
SUTURE_REPLACE(work, work_v2);
