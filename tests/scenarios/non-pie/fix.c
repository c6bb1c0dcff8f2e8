/* compute() for a non-PIE target, compiled as non-PIC code (-fno-pic): the
 * table lookup and the address of `base` become absolute 32-bit relocations
 * (R_X86_64_32S / R_X86_64_32), which only fit when the patch is placed low, as
 * the non-PIE executable is. V moves to 1000 + 100 * (tick % 10) + old value. */
#include <suture/patch.h>

extern int base;

static const int hundreds[10] = {1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900};
static int *volatile base_address = &base; /* an absolute address in data */

int compute_v2(int tick) {
  int digits = 0;
  for (int t = tick; t > 0; t /= 10) digits += t % 10;
  return hundreds[tick % 10] + (digits * *base_address + tick) % 100;
}

SUTURE_REPLACE(compute, compute_v2);
