/* Prints "tick N exe=E lib=L": E from the executable's exe_part(), L from
 * libpart.so's lib_part(). Another thread sits in libpart.so's lib_spin(). */
#include "scenario.h"

int lib_part(int tick);
void lib_spin(void);

__attribute__((noinline)) int exe_part(int tick) {
  int v = 0;
  for (int t = tick; t > 0; t /= 3) v += t % 3;
  return (v * 11) % 100;
}

static void *spinner(void *arg) {
  (void)arg;
  scenario_name_thread("spinner");
  lib_spin();
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, spinner, NULL);
  for (int tick = 0;; tick++) {
    int e = exe_part(tick);
    int l = lib_part(tick);
    printf("tick %d exe=%d lib=%d\n", tick, e, l);
    scenario_sleep_ms(50);
  }
}
