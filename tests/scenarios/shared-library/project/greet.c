/* libgreet.so: lib_compute() is the function the patch replaces; it reads the
 * library's own global, as library code does (through the GOT). */
int lib_base = 17;

__attribute__((noinline)) int lib_compute(int tick) {
  int v = tick ^ lib_base;
  for (int i = 0; i < 3; i++) v = (v * 13 + 7) % 1000;
  return v % 100;
}
