// Rejected: reading the answer from a GOT entry the dynamic linker already
// filled (a versioned name can bind another implementation, memcpy@GLIBC_2.2.5
// is memmove, and lazy binding leaves entries unfilled); running all resolvers
// in one hold (one long hold instead of several short ones).
//
// Limits. A program that overwrites its initial environment (Redis sets its
// process title there) shows suture no GLIBC_TUNABLES, so one started with
// tunables may get the implementation its CPU would pick without them: a
// correct one for the CPU, perhaps not the one the tunables asked for.
#include "engine/ifunc-resolution.h"

#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "common/error.h"
#include "process/proc-files.h"

namespace suture::engine {
namespace {

// glibc's objects with IFUNCs whose resolvers depend only on the CPU features.
bool is_glibc_object(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  return name.rfind("libc.so.", 0) == 0 || name.rfind("libm.so.", 0) == 0 || name.rfind("libmvec.so.", 0) == 0;
}

// An object loaded in suture's own process.
struct OwnObject {
  uintptr_t bias = 0;
  std::vector<std::pair<uintptr_t, uintptr_t>> loads;  // [start, end) of each PT_LOAD
  bool contains(uintptr_t address) const {
    return std::any_of(loads.begin(), loads.end(), [&](auto& l) { return address >= l.first && address < l.second; });
  }
};

std::string build_id_of(const dl_phdr_info& info) {
  for (int i = 0; i < info.dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info.dlpi_phdr[i];
    if (ph.p_type != PT_NOTE) continue;
    auto at = reinterpret_cast<const uint8_t*>(info.dlpi_addr + ph.p_vaddr);
    const uint8_t* end = at + ph.p_memsz;
    while (at + sizeof(ElfW(Nhdr)) <= end) {
      ElfW(Nhdr) note;
      std::memcpy(&note, at, sizeof note);
      const uint8_t* name = at + sizeof note;
      const uint8_t* desc = name + ((note.n_namesz + 3) & ~3u);
      const uint8_t* next = desc + ((note.n_descsz + 3) & ~3u);
      if (next > end) break;
      if (note.n_type == NT_GNU_BUILD_ID && note.n_namesz == 4 && std::memcmp(name, "GNU", 4) == 0) {
        std::string hex;
        for (uint32_t k = 0; k < note.n_descsz; ++k) hex += fmt::format("{:02x}", desc[k]);
        return hex;
      }
      at = next;
    }
  }
  return {};
}

std::optional<OwnObject> own_object_with_build_id(const std::string& build_id) {
  struct Search {
    const std::string& want;
    std::optional<OwnObject> found;
  } search{build_id, std::nullopt};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto& s = *static_cast<Search*>(data);
        if (build_id_of(*info) != s.want) return 0;
        OwnObject o;
        o.bias = info->dlpi_addr;
        for (int i = 0; i < info->dlpi_phnum; ++i)
          if (info->dlpi_phdr[i].p_type == PT_LOAD)
            o.loads.emplace_back(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr,
                                 info->dlpi_addr + info->dlpi_phdr[i].p_vaddr + info->dlpi_phdr[i].p_memsz);
        s.found = std::move(o);
        return 1;
      },
      &search);
  return search.found;
}

// GLIBC_TUNABLES in a process's initial environment (what glibc read at
// start-up); nullopt when unset. Throws Error when the file cannot be read.
std::optional<std::string> tunables_of(const std::string& environ_path) {
  auto text = process::read_proc_file(environ_path);
  if (!text) fail("cannot read {}", environ_path);
  static constexpr std::string_view kName = "GLIBC_TUNABLES=";
  size_t at = 0;
  while (at < text->size()) {
    size_t end = text->find('\0', at);
    if (end == std::string::npos) end = text->size();
    std::string_view entry(text->data() + at, end - at);
    if (entry.substr(0, kName.size()) == kName) return std::string(entry.substr(kName.size()));
    at = end + 1;
  }
  return std::nullopt;
}

}  // namespace

IfuncResolution::IfuncResolution(process::Tracee& tracee, const std::vector<process::LoadedObject>& objects)
    : tracee_(tracee), objects_(objects) {}

RemoteAddr IfuncResolution::resolve(RemoteAddr resolver) {
  if (auto it = resolved_.find(resolver); it != resolved_.end()) return it->second;
  RemoteAddr result;
  if (auto local = local_allowed_ ? resolve_locally(resolver) : std::nullopt) {
    result = *local;
    ++local_;
  } else {
    result = resolve_in_target(resolver);
    ++remote_;
  }
  resolved_.emplace(resolver, result);
  return result;
}

std::optional<RemoteAddr> IfuncResolution::resolve_locally(RemoteAddr resolver) {
  auto object = std::find_if(objects_.begin(), objects_.end(), [&](const process::LoadedObject& o) {
    return !o.is_vdso && o.span.contains(resolver);
  });
  if (object == objects_.end() || object->build_id.empty() || !is_glibc_object(object->path)) return std::nullopt;
  if (!same_tunables_) {
    try {
      same_tunables_ = tunables_of(fmt::format("/proc/{}/environ", tracee_.pid())) == tunables_of("/proc/self/environ");
    } catch (const Error&) {
      same_tunables_ = false;
    }
  }
  if (!*same_tunables_) return std::nullopt;
  auto own = own_object_with_build_id(object->build_id);
  if (!own) return std::nullopt;
  const uintptr_t here = own->bias + static_cast<uintptr_t>(resolver - object->bias);
  if (!own->contains(here)) return std::nullopt;
  // The same bytes as the target's resolver: an ordinary call in our process.
  auto function = reinterpret_cast<uintptr_t (*)()>(here);
  const uintptr_t chosen = function();
  if (!own->contains(chosen)) return std::nullopt;  // outside the object: no offset to carry over
  return object->bias + static_cast<int64_t>(chosen - own->bias);
}

RemoteAddr IfuncResolution::resolve_in_target(RemoteAddr resolver) {
  tracee_.hold_one(process::Tracee::Work::calls);
  uint64_t result = 0;
  try {
    result = tracee_.call(resolver, {});
  } catch (...) {
    tracee_.release_all();
    throw;
  }
  tracee_.release_all();
  return RemoteAddr(result);
}

}  // namespace suture::engine
