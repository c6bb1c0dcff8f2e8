/* PING answers "+PONG (patched live)" instead of "+PONG". */
#include <suture/patch.h>

typedef struct client client;
void addReplyStatus(client *c, const char *status);

static void ping_command_v2(client *c) {
  addReplyStatus(c, "PONG (patched live)");
}
SUTURE_REPLACE(pingCommand, ping_command_v2);
