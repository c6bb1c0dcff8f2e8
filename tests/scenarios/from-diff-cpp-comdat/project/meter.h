// A template member defined in a header: a.cc and b.cc each instantiate
// Meter<int>::add, in a COMDAT group of its own; the linker keeps one copy.
#pragma once

template <typename T>
struct Meter {
  T total{};
  int calls = 0;
  __attribute__((noinline)) T add(T v);
};

template <typename T>
T Meter<T>::add(T v) {
  ++calls;
  total += v;
  return total;
}

namespace app {
int step_a(int x);
int step_b(int x);
const char* label();
}  // namespace app
