/* A "churn" thread creates and ends short-lived threads without pause (joined
 * ones and detached ones), each calling compute(); the main thread prints
 * "tick N value=V churn=C spawned=S": V = compute(N), C the last value a
 * short-lived thread computed, S how many threads were created so far. */
#include "scenario.h"

#include <stdatomic.h>

int base = 7;
static atomic_int churn_value;
static atomic_long spawned;

__attribute__((noinline)) int compute(int x) {
  int v = x;
  for (int i = 0; i < 3; i++) v = (v * 17 + base) % 1013;
  return v % 100;
}

static void *short_lived(void *arg) {
  atomic_store(&churn_value, compute((int)(long)arg));
  return NULL;
}

static void *churn(void *arg) {
  (void)arg;
  scenario_name_thread("churn");
  pthread_attr_t detached;
  pthread_attr_init(&detached);
  pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
  for (long round = 0;; round++) {
    pthread_t t[8];
    int joinable = 0;
    for (int i = 0; i < 8; i++)
      if (pthread_create(&t[joinable], NULL, short_lived, (void *)(round * 8 + i)) == 0) joinable++;
    pthread_t d;
    int detached_made = pthread_create(&d, &detached, short_lived, (void *)round) == 0;
    for (int i = 0; i < joinable; i++) pthread_join(t[i], NULL);
    atomic_fetch_add(&spawned, joinable + detached_made);
  }
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t t;
  pthread_create(&t, NULL, churn, NULL);
  for (int tick = 0;; tick++) {
    int v = compute(tick);
    printf("tick %d value=%d churn=%d spawned=%ld\n", tick, v, atomic_load(&churn_value),
           atomic_load(&spawned));
    scenario_sleep_ms(50);
  }
}
