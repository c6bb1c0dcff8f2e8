// A statically linked target: no dynamic linker, so no r_debug to read.
#include <unistd.h>

#include <cstdio>

int main() {
  std::printf("ready pid=%d\n", getpid());
  std::fflush(stdout);
  char buffer[256];
  while (read(0, buffer, sizeof buffer) > 0) {
  }
  return 0;
}
