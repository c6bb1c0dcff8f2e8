// Replacements for a method and a namespaced overload. A method's replacement
// is a free function that takes `this` explicitly; it sees the object through
// a struct with the class's layout (the members are private in the target).
#include <suture/patch.h>

namespace {

struct CounterLayout {  // shop::Counter's data members, in order
  int step;
  int total;
};

int counter_next_v2(CounterLayout* self, int bonus) {
  (void)bonus;
  self->total += 1000 + self->step;
  return self->total;
}

int price_v2(int quantity) { return 500 + quantity; }

}  // namespace

SUTURE_REPLACE(shop::Counter::next, counter_next_v2);
SUTURE_REPLACE(shop::price(int), price_v2);
