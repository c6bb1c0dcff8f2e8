#include "vend.h"

__attribute__((noinline)) int vend_other(int x) { return x * 7; }
