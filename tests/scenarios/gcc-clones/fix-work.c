#include <suture/patch.h>
static int work_v2(int x, int mode) { return x * mode; }
SUTURE_REPLACE(work, work_v2);
