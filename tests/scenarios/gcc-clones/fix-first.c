/* Replacing a caller of the specialised copies is the way to change them. */
#include <suture/patch.h>
static int first_v2(int x) { return 100000 + x; }
SUTURE_REPLACE(first, first_v2);
