/* What the greeter answers to "GET name". Kept in a file of its own, as a
 * server keeps its reply formatting apart from parsing and networking:
 * build_reply() is the function the demo patch replaces while the server runs. */
#include "reply.h"

#include <stdio.h>

size_t build_reply(const char *name, char *out, size_t size) {
  int n = snprintf(out, size, "hello, %s (v1)\n", name);
  if (n < 0) return 0;
  return (size_t)n < size ? (size_t)n : size - 1;
}
