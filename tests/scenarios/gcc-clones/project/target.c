/* gcc keeps only specialised copies of two static functions here: work() is
 * always called with mode 3 (work.constprop.0) and check()'s costly path is
 * split off (check.part.0). Prints "tick N value=V first=F". */
#include "scenario.h"

__attribute__((noinline)) void log_value(int v) {
  if (v == -12345) printf("never %d\n", v);
}

static __attribute__((noinline)) int work(int x, int mode) {
  int sum = 0;
  for (int i = 0; i < x; ++i) sum += (i * mode) ^ (sum >> 3);
  return sum;
}

static int check(int x) {
  if (x > 1000000) {
    for (int i = 0; i < 8; ++i) log_value(x + i);
    for (int i = 0; i < x; i += 3) log_value(x * i);
    log_value(x - 1);
    log_value(x - 2);
    log_value(x - 3);
    return -1;
  }
  return x;
}

__attribute__((noinline)) int first(int x) { return work(x, 3) + check(x); }
__attribute__((noinline)) int second(int x) { return work(x + 1, 3) + check(x * 2); }

int main(void) {
  scenario_init();
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d first=%d\n", tick, second(tick % 50) % 1000, first(tick % 50));
    scenario_sleep_ms(50);
  }
}
