/* Parsing one request line and choosing the reply. */
#include <stdio.h>
#include <string.h>

#include "reply.h"

static size_t fixed_reply(const char *text, char *out, size_t size) {
  int n = snprintf(out, size, "%s", text);
  if (n < 0) return 0;
  return (size_t)n < size ? (size_t)n : size - 1;
}

size_t handle_request(const char *line, char *out, size_t size) {
  if (strncmp(line, "GET ", 4) == 0) {
    const char *name = line + 4;
    size_t len = strlen(name);
    if (len == 0 || len > GREETER_MAX_NAME || strchr(name, ' ')) return fixed_reply("error: bad name\n", out, size);
    return build_reply(name, out, size);
  }
  if (strcmp(line, "PING") == 0) return fixed_reply("pong\n", out, size);
  return fixed_reply("error: unknown request\n", out, size);
}
