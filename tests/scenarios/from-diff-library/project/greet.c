/* The library's part: the greeting. */
#include "greet.h"

__attribute__((noinline)) const char *greeting(void) { return "hello"; }
