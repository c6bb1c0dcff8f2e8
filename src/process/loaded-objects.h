// The ELF objects a process has loaded, in the dynamic linker's search order
// (from r_debug's link_map list), with what the linker needs of each.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "process/maps.h"
#include "process/memory.h"

namespace suture::process {

struct LoadedObject {
  std::string path;          // as in /proc/PID/maps (or l_name: "linux-vdso.so.1" for the vdso)
  RemoteAddr bias;           // l_addr: runtime address = bias + st_value
  RemoteAddr link_map;       // address of its struct link_map, null if unknown
  std::string build_id;      // hex, read from the file on disk at `path` (the vdso's from memory)
  std::vector<Mapping> mappings;  // the mappings of this file
  RemoteRange span;          // lowest start .. highest end of those mappings and of the
                             // PT_LOAD segments (so .bss beyond the file is included)
  size_t load_order = 0;     // position in the link_map list (0 = executable)
  bool is_main_executable = false;
  bool is_vdso = false;
  // TLS: module id and, for static TLS, the offset below the thread pointer
  // (glibc's l_tls_modid / l_tls_offset, read through libc's _thread_db_*
  // descriptors). tls_modid is 0 when the object has no TLS.
  uint64_t tls_modid = 0;
  std::optional<int64_t> tls_offset;  // tpoff of the block = -tls_offset
};

// Throws TargetGone, or Error with a reason.
std::vector<LoadedObject> loaded_objects(pid_t pid, const Memory& memory);

// The path under which the controller can open the object's file even if it was
// replaced on disk since (/proc/PID/map_files/START-END), else its path.
std::string openable_path(pid_t pid, const LoadedObject& object);

}  // namespace suture::process
