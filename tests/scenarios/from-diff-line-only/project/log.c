#include <stdio.h>

#include "checks.h"

/* Only bad values are logged, with where they were seen. */
void log_at(const char *file, int line, const char *message, int value) {
  if (value < 0) fprintf(stderr, "%s:%d: %s %d\n", file, line, message, value);
}
