// A C++ program whose exceptions cross the functions a patch replaces. Each tick
// x runs, from main's loop:
//   top(x)  catches std::exception around middle(x) + leaf(x)
//     middle(x)  keeps a Guard (its destructor counts cleanups) around check(x)
//       check(x) throws std::runtime_error("check X") when x % 4 == 0
//     leaf(x)    a leaf that writes only eax and edi (callers built with -fipa-ra
//                may keep values in other caller-saved registers across it). It
//                lives in its own file: had gcc seen that it cannot throw, the call
//                would have no entry in top()'s exception table, and a replacement
//                that throws would end in std::terminate whatever the unwinder knew.
//   safe(x) catches the runtime_error of check(x) itself.
// A second thread never leaves spin(), so a patch of spin() is refused.
// Prints "tick N value=V safe=S what=W cleanups=C".
#include <stdexcept>
#include <string>

#include "scenario.h"

namespace calc {

int cleanups;

struct Guard {
  ~Guard() { ++cleanups; }
};

__attribute__((noinline)) int check(int x) {
  if (x % 4 == 0) throw std::runtime_error("check " + std::to_string(x));
  return x;
}

__attribute__((noinline)) int middle(int x) {
  Guard g;
  return check(x) + 1;
}

int leaf(int x);  // in leaf.cc: seen from here, it might throw

__attribute__((noinline)) int safe(int x) {
  try {
    return check(x);
  } catch (const std::runtime_error&) {
    return -2;
  }
}

__attribute__((noinline)) void* spin(void*) {
  for (;;) scenario_sleep_ms(1000);
}

int top(int x, std::string& what) {
  try {
    int m = middle(x);
    return m + leaf(x);
  } catch (const std::exception& e) {
    what = e.what();
    return -1;
  }
}

}  // namespace calc

int main() {
  scenario_init();
  pthread_t spinner;
  pthread_create(&spinner, nullptr, calc::spin, nullptr);
  for (int tick = 0;; tick++) {
    std::string what = "-";
    int value = calc::top(tick, what);
    int safe = calc::safe(tick);
    printf("tick %d value=%d safe=%d what=%s cleanups=%d\n", tick, value, safe, what.c_str(), calc::cleanups);
    scenario_sleep_ms(40);
  }
}
