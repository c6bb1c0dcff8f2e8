/* Prints "tick N value=V". A second thread enters handle() with a negative
 * argument once and never comes back: it waits in handle's rarely taken error
 * path, which gcc moves to a separate fragment (handle.cold) far from the
 * function itself. A thread there is still inside handle(). */
#include "scenario.h"

#include <pthread.h>

static volatile int errors;

/* Marks the path that calls it as rarely taken, which is what makes gcc move
 * that path out of handle() into handle.cold. */
__attribute__((cold, noinline)) static void note_error(int x) { fprintf(stderr, "error: %d\n", x); }

__attribute__((noinline)) int handle(int x) {
  if (x < 0) {
    note_error(x);
    errors++;
    for (;;) {
      fprintf(stderr, "stuck in the error path\n");
      scenario_sleep_ms(200);
    }
  }
  int v = 0;
  for (int i = 0; i < x % 13; i++) v += i * x;
  return v % 97;
}

static void *stuck(void *arg) {
  (void)arg;
  return (void *)(long)handle(-1);
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, stuck, NULL);
  for (int tick = 0;; tick++) {
    printf("tick %d value=%d\n", tick, handle(tick));
    scenario_sleep_ms(50);
  }
}
