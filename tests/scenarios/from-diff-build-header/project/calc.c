#include "calc.h"

int calc_calls;

__attribute__((noinline)) int calc_next(int x) {
  calc_calls++;
  return calc_bump(x);
}
