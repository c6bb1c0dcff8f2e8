/* libpart.so: lib_part() is patched; lib_spin() keeps one thread busy forever
 * (the patch for it can never be applied). */
#include <time.h>

volatile unsigned long lib_spins;

__attribute__((noinline)) int lib_part(int tick) {
  unsigned v = (unsigned)tick * 2654435761u;
  return (int)((v >> 7) % 100);
}

__attribute__((noinline)) void lib_spin(void) {
  for (;;) {
    lib_spins = lib_spins + 1;
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL);
  }
}
