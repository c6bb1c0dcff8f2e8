// The address an IFUNC of the target resolves to, for linking a patch against
// it (memcpy, strlen, ... in glibc are IFUNCs: a resolver picks an
// implementation for the CPU).
//
// Where the resolver lives in a glibc object (libc, libm, libmvec) that suture
// itself has loaded from the same build (same build-id), and the target was
// started with the same GLIBC_TUNABLES as suture, the resolver runs in suture's
// own process: glibc's x86-64 resolvers read nothing but the CPU features the
// dynamic linker computed at start-up from CPUID and those tunables, so the
// two processes get the same implementation, at the same offset in the object.
// No thread of the target is held for it. Anything else (another library's
// resolver, which may read state of its own; another glibc build; other
// tunables) runs in the target on one held thread, as before.
#pragma once

#include <cstddef>
#include <map>
#include <vector>

#include "common/remote-addr.h"
#include "process/loaded-objects.h"
#include "process/tracee.h"

namespace suture::engine {

class IfuncResolution {
 public:
  // `objects` must outlive this.
  IfuncResolution(process::Tracee& tracee, const std::vector<process::LoadedObject>& objects);

  // The implementation `resolver` (an address in the target) selects. Throws
  // Error when the call in the target fails.
  RemoteAddr resolve(RemoteAddr resolver);

  // For tests: run every resolver in the target.
  void always_in_target() { local_allowed_ = false; }
  size_t resolved_locally() const { return local_; }
  size_t resolved_in_target() const { return remote_; }

 private:
  std::optional<RemoteAddr> resolve_locally(RemoteAddr resolver);
  RemoteAddr resolve_in_target(RemoteAddr resolver);

  process::Tracee& tracee_;
  const std::vector<process::LoadedObject>& objects_;
  std::map<RemoteAddr, RemoteAddr> resolved_;
  std::optional<bool> same_tunables_;
  bool local_allowed_ = true;
  size_t local_ = 0;
  size_t remote_ = 0;
};

}  // namespace suture::engine
