/* Prints "tick N first=L": L is the length of the first comma-separated field
 * of a record built at run time, counted by hand (no string functions). */
#include "scenario.h"

__attribute__((noinline)) int first_field_length(const char *record) {
  int n = 0;
  while (record[n] != '\0' && record[n] != ',') n++;
  return n;
}

int main(void) {
  scenario_init();
  static const char *const fruit[] = {"apple", "fig", "cherry"};
  char record[64];
  for (int tick = 0;; tick++) {
    snprintf(record, sizeof record, "id%d,%s,%d", tick, fruit[tick % 3], tick * 7);
    printf("tick %d first=%d\n", tick, first_field_length(record));
    scenario_sleep_ms(50);
  }
}
