// The target's symbol world, as the dynamic linker sees it, plus the static
// symbols from each object's .symtab. Resolution order for an undefined symbol
// of a patch for object P:
//   1. an explicit binding (SUTURE_BIND) -> P's .symtab, by name and source file;
//   2. the global scope in link_map order (the executable first), default symbol
//      versions only, STB_GLOBAL/STB_WEAK definitions (a weak one only if no
//      global is found), so interposition works as for the target's own code;
//   3. P's own hidden / local symbols (statics) from .symtab, which must be unique
//      by name (else the error asks for "file.c:name" through SUTURE_BIND).
// STT_GNU_IFUNC definitions are resolved by running their resolver in the target.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/remote-addr.h"
#include "elf/elf-file.h"

namespace suture::link {

// One loaded object of the target, with its file parsed.
struct TargetObject {
  std::string path;
  RemoteAddr bias;             // runtime address = bias + st_value
  RemoteRange span;            // where its mappings are
  const elf::ElfFile* file = nullptr;         // the object itself (dynsym, maybe symtab)
  const elf::ElfFile* debug_file = nullptr;   // separate debug file with .symtab, if any
  uint64_t tls_modid = 0;                      // 0: no TLS
  std::optional<int64_t> tls_offset;           // static TLS: block at thread pointer - offset
};

struct ResolvedSymbol {
  RemoteAddr address;          // for TLS symbols: the offset within the module's TLS block
  uint64_t size = 0;
  uint8_t type = 0;            // STT_*
  bool tls = false;
  size_t object = 0;           // index into the objects vector
  std::string description;     // "memcpy@@GLIBC_2.14 in /lib/x86_64-linux-gnu/libc.so.6"
};

// Runs an IFUNC resolver in the target and returns the implementation's address.
using IfuncResolver = std::function<RemoteAddr(RemoteAddr resolver)>;

class TargetSymbols {
 public:
  TargetSymbols(std::vector<TargetObject> objects, IfuncResolver resolve_ifunc);

  const std::vector<TargetObject>& objects() const { return objects_; }

  // Resolves `name` for a patch of objects()[patched]; throws Error naming the
  // symbol when it cannot be found or is ambiguous.
  ResolvedSymbol resolve(std::string_view name, size_t patched) const;
  // A symbol of objects()[patched] by name and, when non-empty, source file
  // (matched on the basename or a path suffix). Looks at statics too.
  ResolvedSymbol resolve_in_object(std::string_view name, std::string_view file, size_t patched) const;
  // Like resolve(), but nullopt when no object defines `name` (for undefined
  // weak references); still throws when the name is ambiguous.
  std::optional<ResolvedSymbol> find(std::string_view name, size_t patched) const;

 private:
  // One object's symbol tables, indexed by name once (keys view the ElfFile's
  // strings, which outlive us).
  struct Tables {
    const std::vector<elf::Symbol>* dynamic = nullptr;  // .dynsym
    const std::vector<elf::Symbol>* full = nullptr;     // .symtab (debug file's first), may be empty
    std::unordered_map<std::string_view, std::vector<uint32_t>> dynamic_by_name;
    std::unordered_map<std::string_view, std::vector<uint32_t>> full_by_name;
  };
  struct Found {
    size_t object = 0;
    const elf::Symbol* symbol = nullptr;
  };

  std::optional<Found> find_global(std::string_view name, size_t patched) const;
  std::optional<Found> find_in_object_globals(std::string_view name, size_t object) const;
  std::vector<Found> find_statics(std::string_view name, std::string_view file, size_t object) const;
  ResolvedSymbol finish(const Found& found) const;
  std::string object_name(size_t object) const;

  std::vector<TargetObject> objects_;
  IfuncResolver resolve_ifunc_;
  std::vector<Tables> tables_;
};

}  // namespace suture::link
