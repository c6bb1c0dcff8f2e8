// A C++ program: a method of shop::Counter and the overloaded function
// shop::price(int) are what the patch replaces; shop::price(int, int) stays.
// Prints "tick N total=T price=P price2=Q".
#include "scenario.h"

namespace shop {

class Counter {
 public:
  explicit Counter(int step) : step_(step) {}
  __attribute__((noinline)) int next(int bonus);

 private:
  int step_;
  int total_ = 0;
};

int Counter::next(int bonus) {
  total_ += step_ + bonus % 3;
  return total_;
}

int price_base = 1;

__attribute__((noinline)) int price(int quantity) { return quantity * 3 + price_base; }
__attribute__((noinline)) int price(int quantity, int discount) { return quantity * 3 - discount; }

}  // namespace shop

int main() {
  scenario_init();
  shop::Counter counter(2);
  for (int tick = 0;; tick++) {
    int total = counter.next(tick);
    int p = shop::price(tick % 10);
    int q = shop::price(tick % 10, 1);
    printf("tick %d total=%d price=%d price2=%d\n", tick, total, p, q);
    scenario_sleep_ms(50);
  }
}
