/* Three workers serve "requests": handle_request() calls step_a(), works for
 * ~100 us, then calls step_b(). The patch changes both steps (1 -> 10); a
 * request that got one step from each version is "mixed". Each worker prints
 * "worker K round R v1=A v10=B mixed=M" every 100 ms; a fourth thread sits
 * blocked in read() forever (idle between requests), and main prints ticks. */
#include "scenario.h"

__attribute__((noinline, noipa)) long step_a(long id) {
  asm volatile("" : "+r"(id));
  return 1 + (id & 0);
}

__attribute__((noinline, noipa)) long step_b(long id) {
  asm volatile("" : "+r"(id));
  return 1 + (id & 0);
}

__attribute__((noinline, noipa)) long handle_request(long id, long *mixed) {
  long a = step_a(id);
  double start = scenario_now();
  while (scenario_now() - start < 100e-6) {
  }
  long b = step_b(id);
  if (a != b) ++*mixed;
  return a;
}

static void *worker(void *arg) {
  long k = (long)arg;
  char name[16];
  snprintf(name, sizeof name, "worker-%ld", k);
  scenario_name_thread(name);
  long mixed = 0;
  for (long round = 0;; round++) {
    long v1 = 0, v10 = 0;
    double start = scenario_now();
    for (long id = 0; scenario_now() - start < 0.1; id++) {
      long v = handle_request(id, &mixed);
      if (v == 1) v1++;
      else if (v == 10) v10++;
      struct timespec ts = {0, 50000};
      nanosleep(&ts, NULL);
    }
    if (mixed) printf("crash: worker %ld served %ld mixed requests\n", k, mixed);
    printf("worker %ld round %ld v1=%ld v10=%ld mixed=%ld\n", k, round, v1, v10, mixed);
  }
  return NULL;
}

static int never[2];

static void *idler(void *arg) {
  (void)arg;
  scenario_name_thread("idler");
  char c;
  ssize_t n = read(never[0], &c, 1);
  (void)n;
  return NULL;
}

int main(void) {
  scenario_init();
  if (pipe(never) != 0) return 1;
  pthread_t t;
  pthread_create(&t, NULL, idler, NULL);
  for (long k = 0; k < 3; k++) pthread_create(&t, NULL, worker, (void *)k);
  for (int tick = 0;; tick++) {
    printf("tick %d\n", tick);
    scenario_sleep_ms(100);
  }
}
