#include "meter.h"

namespace app {
Meter<int> b_meter;
__attribute__((noinline)) int step_b(int x) { return b_meter.add(x + 1); }
}  // namespace app
