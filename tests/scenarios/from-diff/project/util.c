/* The library part of a small make project: compute() keeps a call count in a
 * static variable whose value must survive the live patch. */
#include "util.h"

static int calls;

static int scale(int x) { return x * 3 + calls; }

__attribute__((noinline)) int compute(int x) {
  calls++;
  int y = 0;
  for (int i = 0; i < x % 7; i++) y += scale(i);
  return y;
}

__attribute__((noinline)) int call_count(void) { return calls; }

__attribute__((noinline)) const char *label(void) { return "v1"; }
