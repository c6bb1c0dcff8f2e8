/* score() rewritten with a helper the target never had: S is now
 * 500 + the sum of the tick's decimal digits. */
#include <suture/patch.h>

static __attribute__((noinline)) int digit_sum(int n) {
  int sum = 0;
  for (; n > 0; n /= 10) sum += n % 10;
  return sum;
}

static int score_v2(int tick) { return 500 + digit_sum(tick); }

SUTURE_REPLACE(score, score_v2);
