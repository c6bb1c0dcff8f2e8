/* One of two files with the same static names (count, scaled, bump). Here
 * count steps by 1 and scaled() gives 10 * n + 1. */
static int count;

static __attribute__((noinline)) int scaled(int n) { return n * 10 + 1; }

static __attribute__((noinline)) int bump(void) {
  count += 1;
  return scaled(count);
}

int a_next(void) { return bump(); }
