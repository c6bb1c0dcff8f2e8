// Version 2: middle() lets check()'s exception pass through patch code (its
// guard, counting 10, runs on the way); leaf() throws itself and, as it now
// calls into the C++ runtime, is reached through a register-preserving thunk;
// safe() catches in patch code.
#include <stdexcept>
#include <string>

#include <suture/patch.h>

namespace calc {
extern int cleanups;
int check(int x);
}  // namespace calc

namespace {

struct Guard2 {
  ~Guard2() { calc::cleanups += 10; }
};

int middle_v2(int x) {
  Guard2 g;
  return calc::check(x) + 1000;
}

int leaf_v2(int x) {
  if (x % 3 == 0) throw std::logic_error("leaf_v2 " + std::to_string(x));
  return x * 3 + (x >> 30);
}

int safe_v2(int x) {
  try {
    return calc::check(x) * 10;
  } catch (const std::runtime_error&) {
    return -20;
  }
}

}  // namespace

SUTURE_REPLACE(calc::middle(int), middle_v2);
SUTURE_REPLACE(calc::leaf(int), leaf_v2);
SUTURE_REPLACE(calc::safe(int), safe_v2);
