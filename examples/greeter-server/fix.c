/* The demo's hand-written patch: greet in capitals and say so.
 *
 *   cc -c -O2 -fPIC -I include examples/greeter-server/fix.c -o fix.o
 *   suture pack --target build/examples/greeter-server/greeter-server fix.o -o fix.sut
 *   suture apply $(pidof greeter-server) fix.sut
 *
 * The replacement has build_reply()'s signature; it may call libc freely. */
#include <ctype.h>
#include <stdio.h>

#include <suture/patch.h>

static size_t build_reply_v2(const char *name, char *out, size_t size) {
  char upper[129];
  size_t i = 0;
  for (; name[i] != '\0' && i < sizeof upper - 1; i++) upper[i] = (char)toupper((unsigned char)name[i]);
  upper[i] = '\0';
  int n = snprintf(out, size, "HELLO, %s (v2, patched live)\n", upper);
  if (n < 0) return 0;
  return (size_t)n < size ? (size_t)n : size - 1;
}

SUTURE_REPLACE(build_reply, build_reply_v2);
