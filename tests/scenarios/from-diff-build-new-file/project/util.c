#include "util.h"

__attribute__((noinline)) int compute(int x) { return x % 10; }
