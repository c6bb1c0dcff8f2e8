#include "common/error.h"

#include <cstring>

namespace suture {

std::string errno_text(int err) {
  char buffer[256];
  // GNU strerror_r returns a pointer that may or may not be the buffer.
  const char* text = strerror_r(err, buffer, sizeof buffer);
  return text;
}

}  // namespace suture
