/* The other file with the same static names. Here count starts at 500 and
 * steps by 2, and scaled() gives 1000 * n + 2. */
static int count = 500;

static __attribute__((noinline)) int scaled(int n) { return n * 1000 + 2; }

static __attribute__((noinline)) int bump(void) {
  count += 2;
  return scaled(count);
}

int b_next(void) { return bump(); }
