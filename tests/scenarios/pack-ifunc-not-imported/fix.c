/* The same length, found with strchrnul(): a glibc function the target never
 * calls, and an IFUNC (its implementation is chosen for the CPU at load time).
 * L becomes 100 + the length. */
#define _GNU_SOURCE
#include <string.h>

#include <suture/patch.h>

static int first_field_length_v2(const char *record) {
  return 100 + (int)(strchrnul(record, ',') - record);
}

SUTURE_REPLACE(first_field_length, first_field_length_v2);
