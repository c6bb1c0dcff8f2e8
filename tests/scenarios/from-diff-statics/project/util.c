/* tick_count keeps its count in a function-local static: gcc names it
 * counter.0 here. */
#include "util.h"

__attribute__((noinline)) int tick_count(void) {
  static int counter;
  return ++counter;
}

__attribute__((noinline)) const char *label(void) { return "v1"; }
