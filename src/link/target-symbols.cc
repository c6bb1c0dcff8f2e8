// Resolving a patch's undefined symbols the way the target's own code was.
//
// The dynamic linker binds a reference by walking the global scope (the
// executable, then its libraries in load order) and taking the first default
// version of the name; a patch must bind the same way, or it would call a
// different malloc than the code it replaces. Two things a patch needs beyond
// the dynamic linker's view: the patched object's non-exported symbols (its
// .symtab globals, which a function inside the object can reach directly), and
// its statics, which only .symtab knows, tagged with their source file.
//
// The walk is done by name lookups in hash indexes built once per object in the
// constructor: a patch of Redis has a few hundred undefined symbols, Redis has
// ~10k .symtab entries and libc ~3k .dynsym entries, so scanning per lookup would
// be quadratic for no gain. The GNU hash tables of the objects themselves would
// serve .dynsym, but not .symtab and not the debug file, so one mechanism for all.
//
// Deliberate differences from ld.so: a global definition beats a weak one found
// earlier in the scope (what the link editor does, and what LD_DYNAMIC_WEAK
// asks of ld.so), and an IFUNC is resolved by running its resolver in the target
// instead of through an IRELATIVE slot, because the patch holds the final
// address in its own GOT.
#include "link/target-symbols.h"

#include <elf.h>

#include <algorithm>

#include <fmt/format.h>

#include "common/error.h"

namespace suture::link {
namespace {

bool is_named_definition(const elf::Symbol& s) {
  return s.defined() && !s.name.empty() && s.type != STT_SECTION && s.type != STT_FILE;
}

bool is_global_binding(uint8_t bind) { return bind == STB_GLOBAL || bind == STB_WEAK || bind == STB_GNU_UNIQUE; }

// A symbol other objects may bind to: hidden and internal ones are private to
// their object (they rarely reach .dynsym, but the rule is the ELF rule).
bool visible_from(const elf::Symbol& s, bool same_object) {
  return same_object || (s.visibility != STV_HIDDEN && s.visibility != STV_INTERNAL);
}

std::string_view basename_of(std::string_view path) {
  const size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// "a.c" matches "a.c", "src/a.c" and "/build/src/a.c", and the other way round.
bool same_source_file(std::string_view recorded, std::string_view wanted) {
  auto is_path_suffix = [](std::string_view longer, std::string_view shorter) {
    return longer.size() > shorter.size() && longer.ends_with(shorter) &&
           longer[longer.size() - shorter.size() - 1] == '/';
  };
  return recorded == wanted || is_path_suffix(recorded, wanted) || is_path_suffix(wanted, recorded);
}

void index_by_name(const std::vector<elf::Symbol>& symbols,
                   std::unordered_map<std::string_view, std::vector<uint32_t>>& index) {
  index.reserve(symbols.size());
  for (size_t i = 0; i < symbols.size(); ++i)
    if (is_named_definition(symbols[i])) index[symbols[i].name].push_back(static_cast<uint32_t>(i));
}

}  // namespace

TargetSymbols::TargetSymbols(std::vector<TargetObject> objects, IfuncResolver resolve_ifunc)
    : objects_(std::move(objects)), resolve_ifunc_(std::move(resolve_ifunc)) {
  tables_.resize(objects_.size());
  for (size_t i = 0; i < objects_.size(); ++i) {
    const TargetObject& object = objects_[i];
    Tables& tables = tables_[i];
    if (object.file) {
      tables.dynamic = &object.file->dynamic_symbols();
      index_by_name(*tables.dynamic, tables.dynamic_by_name);
    }
    // The debug file's .symtab is the complete one when the object is stripped.
    if (object.debug_file && object.debug_file->symbols().size() > 1) tables.full = &object.debug_file->symbols();
    else if (object.file) tables.full = &object.file->symbols();
    if (tables.full) index_by_name(*tables.full, tables.full_by_name);
  }
}

std::string TargetSymbols::object_name(size_t object) const {
  return std::string(basename_of(objects_[object].path));
}

// Step 2 of the header's order: the first global definition in scope order, or
// failing that the first weak one.
std::optional<TargetSymbols::Found> TargetSymbols::find_global(std::string_view name, size_t patched) const {
  std::optional<Found> weak;
  for (size_t i = 0; i < objects_.size(); ++i) {
    const Tables& tables = tables_[i];
    auto scan = [&](const std::vector<elf::Symbol>* symbols,
                    const std::unordered_map<std::string_view, std::vector<uint32_t>>& by_name) -> const elf::Symbol* {
      auto it = by_name.find(name);
      if (it == by_name.end()) return nullptr;
      for (uint32_t index : it->second) {
        const elf::Symbol& s = (*symbols)[index];
        if (!is_global_binding(s.bind) || !visible_from(s, i == patched)) continue;
        if (!s.default_version) continue;  // memcpy@GLIBC_2.2.5 is for old binaries only
        if (s.bind != STB_WEAK) return &s;
        if (!weak) weak = Found{i, &s};
      }
      return nullptr;
    };
    if (tables.dynamic)
      if (const elf::Symbol* s = scan(tables.dynamic, tables.dynamic_by_name)) return Found{i, s};
    if (i == patched && tables.full)
      if (const elf::Symbol* s = scan(tables.full, tables.full_by_name)) return Found{i, s};
  }
  return weak;
}

// Globals of one object only (explicit bindings): .symtab first, then .dynsym.
std::optional<TargetSymbols::Found> TargetSymbols::find_in_object_globals(std::string_view name,
                                                                          size_t object) const {
  const Tables& tables = tables_[object];
  std::optional<Found> weak;
  auto scan = [&](const std::vector<elf::Symbol>* symbols,
                  const std::unordered_map<std::string_view, std::vector<uint32_t>>& by_name) -> const elf::Symbol* {
    if (!symbols) return nullptr;
    auto it = by_name.find(name);
    if (it == by_name.end()) return nullptr;
    for (uint32_t index : it->second) {
      const elf::Symbol& s = (*symbols)[index];
      if (!is_global_binding(s.bind) || !s.default_version) continue;
      if (s.bind != STB_WEAK) return &s;
      if (!weak) weak = Found{object, &s};
    }
    return nullptr;
  };
  if (const elf::Symbol* s = scan(tables.full, tables.full_by_name)) return Found{object, s};
  if (const elf::Symbol* s = scan(tables.dynamic, tables.dynamic_by_name)) return Found{object, s};
  return weak;
}

// Step 3: statics (STB_LOCAL) of one object by name, optionally from one source
// file; one entry per distinct address.
std::vector<TargetSymbols::Found> TargetSymbols::find_statics(std::string_view name, std::string_view file,
                                                              size_t object) const {
  std::vector<Found> found;
  const Tables& tables = tables_[object];
  if (!tables.full) return found;
  auto it = tables.full_by_name.find(name);
  if (it == tables.full_by_name.end()) return found;
  for (uint32_t index : it->second) {
    const elf::Symbol& s = (*tables.full)[index];
    if (s.bind != STB_LOCAL) continue;
    if (!file.empty() && !same_source_file(s.file, file)) continue;
    const bool duplicate = std::any_of(found.begin(), found.end(), [&](const Found& f) {
      return f.symbol->value == s.value && f.symbol->type == s.type;
    });
    if (!duplicate) found.push_back({object, &s});
  }
  return found;
}

ResolvedSymbol TargetSymbols::finish(const Found& found) const {
  const TargetObject& object = objects_[found.object];
  const elf::Symbol& s = *found.symbol;
  ResolvedSymbol r;
  r.size = s.size;
  r.type = s.type;
  r.object = found.object;
  r.description = s.name;
  if (!s.version.empty()) r.description += fmt::format("{}{}", s.default_version ? "@@" : "@", s.version);
  if (!s.file.empty()) r.description += fmt::format(" ({})", s.file);
  r.description += " in " + object.path;

  if (s.type == STT_TLS) {
    // Thread-local: the offset in the module's block; the linker adds the rest.
    r.tls = true;
    r.address = RemoteAddr(s.value);
  } else if (s.shndx == SHN_ABS) {
    r.address = RemoteAddr(s.value);  // not relocated, as ld.so does since glibc 2.28
  } else if (s.type == STT_GNU_IFUNC) {
    if (!resolve_ifunc_) fail("{}: an IFUNC, and no way to run its resolver was given", r.description);
    r.address = resolve_ifunc_(object.bias + static_cast<int64_t>(s.value));
    r.type = STT_FUNC;
  } else {
    r.address = object.bias + static_cast<int64_t>(s.value);
  }
  return r;
}

std::optional<ResolvedSymbol> TargetSymbols::find(std::string_view name, size_t patched) const {
  if (patched >= objects_.size()) fail("patched object #{} does not exist ({} objects)", patched, objects_.size());
  if (std::optional<Found> global = find_global(name, patched)) return finish(*global);

  std::vector<Found> statics = find_statics(name, {}, patched);
  if (statics.size() == 1) return finish(statics.front());
  if (statics.size() > 1) {
    std::vector<std::string> files;
    for (const Found& f : statics)
      if (std::find(files.begin(), files.end(), f.symbol->file) == files.end())
        files.push_back(f.symbol->file.empty() ? "?" : f.symbol->file);
    fail("symbol '{}' is defined in several files of {} ({}): bind one with SUTURE_BIND(local, file.c:{})", name,
         object_name(patched), fmt::join(files, ", "), name);
  }
  return std::nullopt;
}

ResolvedSymbol TargetSymbols::resolve(std::string_view name, size_t patched) const {
  if (std::optional<ResolvedSymbol> r = find(name, patched)) return *r;
  constexpr size_t kListed = 8;
  std::vector<std::string> names;
  for (size_t i = 0; i < objects_.size() && i < kListed; ++i) names.push_back(object_name(i));
  if (objects_.size() > kListed) names.push_back(fmt::format("and {} more", objects_.size() - kListed));
  fail("undefined symbol '{}' (not found in the target's objects: {})", name, fmt::join(names, ", "));
}

ResolvedSymbol TargetSymbols::resolve_in_object(std::string_view name, std::string_view file,
                                                size_t patched) const {
  if (patched >= objects_.size()) fail("patched object #{} does not exist ({} objects)", patched, objects_.size());
  if (file.empty()) {
    if (std::optional<Found> global = find_in_object_globals(name, patched)) return finish(*global);
    std::vector<Found> statics = find_statics(name, {}, patched);
    if (statics.size() == 1) return finish(statics.front());
    if (statics.size() > 1)
      fail("symbol '{}' is defined several times in {}: name its file (file.c:{})", name, object_name(patched), name);
    fail("symbol '{}' not found in {}", name, object_name(patched));
  }
  std::vector<Found> statics = find_statics(name, file, patched);
  if (statics.size() == 1) return finish(statics.front());
  if (statics.size() > 1) fail("symbol '{}' is defined several times in {} of {}", name, file, object_name(patched));
  // .symtab records source files for locals only; a global of that name is the
  // one the file defines if any.
  if (std::optional<Found> global = find_in_object_globals(name, patched)) return finish(*global);
  fail("symbol '{}' of {} not found in {}", name, file, object_name(patched));
}

}  // namespace suture::link
