// Stacked on fix.cc: safe() again, catching in the newer patch's code.
#include <stdexcept>

#include <suture/patch.h>

namespace calc {
int check(int x);
}

namespace {

int safe_v3(int x) {
  try {
    return calc::check(x) * 100;
  } catch (const std::exception&) {
    return -300;
  }
}

}  // namespace

SUTURE_REPLACE(calc::safe(int), safe_v3);
