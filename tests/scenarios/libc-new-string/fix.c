/* greet() with new text, built with snprintf and written with puts. */
#include <stdio.h>

#include <suture/patch.h>

static void greet_v2(int tick) {
  char line[96];
  snprintf(line, sizeof line, "tick %d: bonjour from the patch, %s tick", tick,
           tick % 2 ? "an odd" : "an even");
  puts(line);
}

SUTURE_REPLACE(greet, greet_v2);
