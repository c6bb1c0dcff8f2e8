/* The patch run.py applies to Debian's redis-server under load: getCommand, which
 * every GET goes through, now also counts its calls. Replies are unchanged, so
 * the load stays valid; run.py reads the counter back through /proc/PID/mem (it
 * is the only thing in the patch's rw- mapping, found by its tag) to prove that
 * the GETs after the instant ran the new code. */
#include <suture/patch.h>

typedef struct client client;
int getGenericCommand(client *c);

struct {
  unsigned long tag; /* "SUTGETCT", so run.py can find it */
  unsigned long calls;
} suture_get_counter = {0x5443544547545553UL, 0};

static void get_command_counted(client *c) {
  __atomic_fetch_add(&suture_get_counter.calls, 1, __ATOMIC_RELAXED);
  getGenericCommand(c);
}
SUTURE_REPLACE(getCommand, get_command_counted);
