/* Two threads, each with a function of its own: "A tick N value=V" from
 * step_a() and "B tick N value=V" from step_b(). The bodies differ, so the
 * compiler cannot fold them into one. */
#include "scenario.h"

__attribute__((noinline)) int step_a(int n) {
  int v = 0;
  for (int i = 0; i <= n % 8; i++) v += i * 3;
  return v % 100;
}

__attribute__((noinline)) int step_b(int n) {
  unsigned v = (unsigned)n;
  v ^= v >> 3;
  v *= 2246822519u;
  return (int)(v % 100);
}

static void *thread_a(void *arg) {
  (void)arg;
  scenario_name_thread("thread-a");
  for (int n = 0;; n++) {
    printf("A tick %d value=%d\n", n, step_a(n));
    scenario_sleep_ms(50);
  }
  return NULL;
}

static void *thread_b(void *arg) {
  (void)arg;
  scenario_name_thread("thread-b");
  for (int n = 0;; n++) {
    printf("B tick %d value=%d\n", n, step_b(n));
    scenario_sleep_ms(50);
  }
  return NULL;
}

int main(void) {
  scenario_init();
  pthread_t a, b;
  pthread_create(&a, NULL, thread_a, NULL);
  pthread_create(&b, NULL, thread_b, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  return 0;
}
