// The memory a patch lives in: one memfd, mapped near the object it patches in
// parts with their own protections (record r--, text r-x, rodata r--, data rw-).
//
// Steps, each undone on failure:
//  1. reserve: an anonymous placeholder mapping at a free address close enough
//     to the object for 32-bit displacements (MAP_FIXED_NOREPLACE, so a racing
//     mapping of the target is never clobbered);
//  2. create the memfd in the target (named from the placeholder's bytes) and
//     open it from here through /proc/PID/fd, so contents are written with plain
//     pwrite, never through the target;
//  3. map each part over the placeholder with its final protection. Nothing is
//     ever writable and executable at once, and the code is a file mapping, so
//     targets under MemoryDenyWriteExecute can be patched too.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "engine/undo-log.h"
#include "process/tracee.h"

namespace suture::engine {

struct RegionPart {
  uint64_t offset = 0;  // within the region, page aligned
  uint64_t size = 0;    // page aligned
  int prot = 0;         // PROT_* for the target
};

class PatchRegion {
 public:
  // Steps 1 and 2. Holds one thread of the tracee for the system calls if none
  // is held, and leaves it held.
  PatchRegion(process::Tracee& tracee, UndoLog& undo, RemoteRange near, uint64_t size, const std::string& name);
  PatchRegion(const PatchRegion&) = delete;
  ~PatchRegion();

  RemoteRange range() const { return range_; }

  // Writes bytes into the backing file (not yet visible at the final protection).
  void write(uint64_t offset, const std::vector<uint8_t>& bytes);
  // Step 3; closes the target's descriptor.
  void map(const std::vector<RegionPart>& parts);

 private:
  process::Tracee& tracee_;
  RemoteRange range_;
  std::shared_ptr<int> remote_fd_;  // the target's descriptor, -1 once closed
  int local_fd_ = -1;
};

// Unmaps a region of a patch (revert, or undo of a failed apply).
void unmap_region(process::Tracee& tracee, RemoteRange range);

}  // namespace suture::engine
