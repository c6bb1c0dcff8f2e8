// /proc/PID/maps, parsed.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/remote-addr.h"

namespace suture::process {

struct Mapping {
  RemoteAddr start;
  RemoteAddr end;
  bool read = false, write = false, exec = false, shared = false;
  uint64_t offset = 0;
  uint64_t inode = 0;
  std::string path;  // may be empty, "[heap]", "/memfd:NAME (deleted)", ...

  RemoteRange range() const { return {start, static_cast<uint64_t>(end - start)}; }
};

// Throws TargetGone if the process does not exist, Error if unreadable.
std::vector<Mapping> read_maps(pid_t pid);

// A free gap of `size` bytes (page aligned) such that every byte of
// [near.start, near.end) stays within `reach` bytes of every byte of the gap;
// the closest such gap is chosen. Empty if none.
std::optional<RemoteAddr> find_free_near(const std::vector<Mapping>& maps, RemoteRange near, uint64_t size,
                                         uint64_t reach = 0x7fff0000ULL);

}  // namespace suture::process
