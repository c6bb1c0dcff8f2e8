/* vend_value() counts its calls in a static whose value must survive the patch. */
#include "vend.h"

static int rounds;

__attribute__((noinline)) int vend_value(int x) {
  rounds++;
  return vend_other(x) % 100;
}

__attribute__((noinline)) int vend_rounds(void) { return rounds; }
