/* The greeter's protocol: one request per line, one reply per line. */
#ifndef GREETER_REPLY_H
#define GREETER_REPLY_H

#include <stddef.h>

/* Longest request line, and the longest name a GET may carry. */
#define GREETER_MAX_LINE 512
#define GREETER_MAX_NAME 128

/* reply.c: writes the reply to "GET name" into out (at most size bytes, NUL-terminated,
 * ending in '\n') and returns its length without the NUL. */
size_t build_reply(const char *name, char *out, size_t size);

/* request.c: handles one request line (without its '\n'); the reply goes to out as for
 * build_reply. */
size_t handle_request(const char *line, char *out, size_t size);

#endif
