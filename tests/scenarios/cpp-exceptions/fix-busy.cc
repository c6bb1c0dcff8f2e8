// A replacement for spin(), which a thread of the target never leaves: the
// apply is refused after its unwind tables were registered, and must take them
// back before it unmaps them.
#include <stdexcept>

#include <suture/patch.h>

namespace {

void* spin_v2(void*) { throw std::logic_error("never runs"); }

}  // namespace

SUTURE_REPLACE(calc::spin(void*), spin_v2);
