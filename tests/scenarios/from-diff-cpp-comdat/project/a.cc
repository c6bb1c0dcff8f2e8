#include "meter.h"

namespace app {
Meter<int> a_meter;
__attribute__((noinline)) int step_a(int x) { return a_meter.add(x); }
__attribute__((noinline)) const char* label() { return "v1"; }
}  // namespace app
