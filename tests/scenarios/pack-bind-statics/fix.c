/* Replaces a.c's static bump() (not b.c's), using a.c's static data and a.c's
 * static function: A becomes -(10 * count + 1), counting on from where it was. */
#include <suture/patch.h>

extern int a_count;
SUTURE_BIND(a_count, a.c:count);
extern int a_scaled(int n);
SUTURE_BIND(a_scaled, a.c:scaled);

static int bump_v2(void) {
  a_count += 1;
  return -a_scaled(a_count);
}

SUTURE_REPLACE(a.c:bump, bump_v2);
