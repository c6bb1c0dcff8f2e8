/* Functions with assertions and a logging macro: both pass __LINE__. */
#include <assert.h>

#include "checks.h"

__attribute__((noinline)) int checked_double(int x) {
  assert(x >= 0);
  assert(x < 100000000);
  return x * 2;
}

__attribute__((noinline)) int logged_step(int x) {
  LOG("step", x);
  return x + 1;
}

__attribute__((noinline)) const char *label(void) { return "v1"; }
