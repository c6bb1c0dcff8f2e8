/* Four threads call compute() back to back, millions of times a second, and
 * check every answer: it must be the old one (2*s+1) or the new one (2*s+7),
 * never anything else. compute() keeps callee-saved registers, so its first
 * five bytes are several instructions (pushes): a thread paused between them
 * is what the switch must handle. Every 100 ms each thread prints
 * "hammer K round R old=A new=B bad=C"; the main thread prints ticks. A thread
 * that ever saw a wrong answer prints "crash: ...". */
#include "scenario.h"

#include <stdatomic.h>

__attribute__((noinline)) long mix(long x) { return x ^ (x >> 3); }

__attribute__((noinline)) long compute(long x) {
  long s = 0;
  for (long i = 0; i < 4; i++) s += mix(x + i);
  return 2 * s + 1;
}

static long expected_sum(long x) {
  long s = 0;
  for (long i = 0; i < 4; i++) s += x + i ^ ((x + i) >> 3);
  return s;
}

static void *hammer(void *arg) {
  long k = (long)arg;
  char name[16];
  snprintf(name, sizeof name, "hammer-%ld", k);
  scenario_name_thread(name);
  for (long round = 0;; round++) {
    long old_answers = 0, new_answers = 0, bad = 0;
    double start = scenario_now();
    for (long x = k * 1000003; scenario_now() - start < 0.1; x++) {
      for (int n = 0; n < 64; n++, x++) {
        long r = compute(x);
        long s = expected_sum(x);
        if (r == 2 * s + 1) old_answers++;
        else if (r == 2 * s + 7) new_answers++;
        else bad++;
      }
    }
    if (bad) printf("crash: hammer %ld saw %ld wrong answers\n", k, bad);
    printf("hammer %ld round %ld old=%ld new=%ld bad=%ld\n", k, round, old_answers, new_answers, bad);
  }
  return NULL;
}

int main(void) {
  scenario_init();
  for (long k = 0; k < 4; k++) {
    pthread_t t;
    pthread_create(&t, NULL, hammer, (void *)k);
  }
  for (int tick = 0;; tick++) {
    printf("tick %d\n", tick);
    scenario_sleep_ms(100);
  }
}
