#include "build/pack.h"

#include <cxxabi.h>
#include <elf.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_set>

#include "common/error.h"
#include "common/read-file.h"
#include "elf/elf-file.h"
#include "redirect/entry-jump.h"
#include "redirect/register-contract.h"

namespace suture::build {
namespace {

namespace fs = std::filesystem;

std::string demangle(const std::string& name) {
  if (name.rfind("_Z", 0) != 0) return name;
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status),
                                                  &std::free);
  return status == 0 && out ? std::string(out.get()) : name;
}

// "ns::C::f(int) const" -> "ns::C::f": the name without its parameter list.
std::string without_parameters(const std::string& demangled) {
  int depth = 0;
  for (size_t i = 0; i < demangled.size(); ++i) {
    char c = demangled[i];
    if (c == '<') ++depth;
    else if (c == '>') --depth;
    else if (c == '(' && depth == 0 && i > 0) return demangled.substr(0, i);
  }
  return demangled;
}

bool file_matches(const std::string& symbol_file, const std::string& wanted) {
  if (wanted.empty()) return true;
  if (symbol_file == wanted) return true;
  if (fs::path(symbol_file).filename() == fs::path(wanted).filename()) return true;
  return symbol_file.size() > wanted.size() && symbol_file.ends_with("/" + wanted);
}

// Splits "file.c:name" at a single colon (never inside "::").
std::pair<std::string, std::string> split_spelling(const std::string& spelling) {
  for (size_t i = 0; i < spelling.size(); ++i) {
    if (spelling[i] != ':') continue;
    bool double_colon = (i + 1 < spelling.size() && spelling[i + 1] == ':') || (i > 0 && spelling[i - 1] == ':');
    if (!double_colon) return {spelling.substr(0, i), spelling.substr(i + 1)};
  }
  return {"", spelling};
}

// The target's view for packing: its symbols (from .symtab, a debug file, .dynsym).
struct TargetView {
  const elf::ElfFile* file;
  std::unique_ptr<elf::ElfFile> debug;
  std::vector<const elf::Symbol*> functions;  // defined functions with a size

  explicit TargetView(const elf::ElfFile& f, const std::string& path) : file(&f) {
    if (!f.find_section(".symtab"))
      if (auto d = elf::find_debug_file(f, path)) debug = std::make_unique<elf::ElfFile>(elf::ElfFile::open(*d));
    auto add = [this](const std::vector<elf::Symbol>& symbols) {
      for (const auto& s : symbols)
        if ((s.type == STT_FUNC || s.type == STT_GNU_IFUNC) && s.defined() && s.size > 0) functions.push_back(&s);
    };
    add(f.symbols());
    if (debug) add(debug->symbols());
    add(f.dynamic_symbols());
  }
};

// "f.cold", "_ZN4calc4safeEii.cold.1": the unlikely path gcc split out of f.
bool is_cold_part(std::string_view name) {
  for (size_t at = name.find(".cold"); at != std::string_view::npos; at = name.find(".cold", at + 1)) {
    size_t end = at + 5;
    if (at > 0 && (end == name.size() || name[end] == '.')) return true;
  }
  return false;
}

patchfile::Replacement resolve_old(const TargetView& target, const std::string& spelling, const std::string& origin) {
  auto [file, name] = split_spelling(spelling);
  std::vector<const elf::Symbol*> hits;
  for (const auto* s : target.functions)
    if (s->name == name && file_matches(s->file, file)) hits.push_back(s);
  if (hits.empty()) {
    for (const auto* s : target.functions) {
      if (s->name.rfind("_Z", 0) != 0 || !file_matches(s->file, file)) continue;
      // gcc's cold part of a function ("_ZN4calc4safeEii.cold") demangles to
      // the function's own name with " [clone .cold]"; it is no function's
      // entry, only named by its own symbol.
      if (is_cold_part(s->name)) continue;
      std::string d = demangle(s->name);
      if (d == name || without_parameters(d) == name) hits.push_back(s);
    }
  }
  // The same function may appear in .symtab and .dynsym, or under aliases.
  std::map<uint64_t, const elf::Symbol*> by_address;
  for (const auto* s : hits) {
    auto [it, fresh] = by_address.emplace(s->value, s);
    if (!fresh && it->second->bind == STB_LOCAL && s->bind != STB_LOCAL) it->second = s;
  }
  if (by_address.empty()) {
    // gcc may have kept only specialised copies (NAME.constprop.0, NAME.isra.0).
    std::set<std::string> copies;
    for (const auto* s : target.functions)
      if (s->name.rfind(name + ".", 0) == 0 && file_matches(s->file, file)) copies.insert(s->name);
    std::string hint;
    for (const auto& c : copies) hint += (hint.empty() ? "; the compiler kept only " : ", ") + c;
    fail("{}: SUTURE_REPLACE({}): {} has no function {}{}{}", origin, spelling, target.file->name(), name,
         file.empty() ? "" : " in " + file, hint);
  }
  if (by_address.size() > 1) {
    std::string where;
    for (const auto& [value, s] : by_address)
      where += fmt::format("{}{} ({})", where.empty() ? "" : ", ", demangle(s->name), s->file.empty() ? "global" : s->file);
    fail("{}: SUTURE_REPLACE({}) is ambiguous in {}: {}; name the source file (file.c:name) or the signature", origin,
         spelling, target.file->name(), where);
  }
  const elf::Symbol* s = by_address.begin()->second;
  if (s->type == STT_GNU_IFUNC)
    fail("{}: SUTURE_REPLACE({}): {} is an IFUNC resolver; replace the implementation it selects", origin, spelling,
         s->name);
  patchfile::Replacement r;
  r.spelling = spelling;
  r.symbol = s->name;
  r.file = s->bind == STB_LOCAL ? s->file : "";
  r.target_value = s->value;
  r.target_size = s->size;
  return r;
}

// Reads the records of a .suture.* section: arrays of pointer pairs whose
// relocations point at strings or functions.
struct RecordField {
  const elf::Symbol* symbol = nullptr;
  int64_t addend = 0;
};

std::vector<std::pair<RecordField, RecordField>> read_pairs(const elf::ElfFile& object, const char* section_name) {
  std::vector<std::pair<RecordField, RecordField>> pairs;
  const elf::Section* section = object.find_section(section_name);
  if (!section) return pairs;
  if (section->size % 16 != 0) fail("{}: {}: size {} is not a whole number of records", object.name(), section_name, section->size);
  std::map<uint64_t, RecordField> fields;
  for (const auto& r : object.relocations_for(*section)) {
    if (r.type != R_X86_64_64) fail("{}: {}: unexpected relocation type {}", object.name(), section_name, r.type);
    fields[r.offset] = {&object.symbols().at(r.symbol), r.addend};
  }
  for (uint64_t at = 0; at < section->size; at += 16) {
    auto a = fields.find(at), b = fields.find(at + 8);
    if (a == fields.end() || b == fields.end())
      fail("{}: {}: record {} is incomplete", object.name(), section_name, at / 16);
    pairs.emplace_back(a->second, b->second);
  }
  return pairs;
}

std::string read_string(const elf::ElfFile& object, const RecordField& field) {
  const auto& sym = *field.symbol;
  if (sym.shndx == 0 || sym.shndx >= object.sections().size()) fail("{}: record string is not in a section", object.name());
  const auto& section = object.sections()[sym.shndx];
  auto bytes = object.section_bytes(section);
  uint64_t at = sym.value + static_cast<uint64_t>(field.addend);
  if (at >= bytes.size()) fail("{}: record string outside its section", object.name());
  auto end = std::find(bytes.begin() + static_cast<ptrdiff_t>(at), bytes.end(), 0);
  if (end == bytes.end()) fail("{}: record string is not terminated", object.name());
  return std::string(bytes.begin() + static_cast<ptrdiff_t>(at), end);
}

std::string function_name(const elf::ElfFile& object, const RecordField& field) {
  const auto& sym = *field.symbol;
  if (sym.type == STT_FUNC && field.addend == 0) return sym.name;
  if (sym.type == STT_SECTION) {
    for (const auto& s : object.symbols())
      if (s.type == STT_FUNC && s.shndx == sym.shndx && s.value == static_cast<uint64_t>(field.addend)) return s.name;
  }
  if (!sym.defined()) fail("{}: SUTURE_REPLACE names '{}', which the patch does not define", object.name(), sym.name);
  fail("{}: SUTURE_REPLACE's new function is not a function of the patch", object.name());
}

// Libraries the target needs (transitively), found on disk.
std::vector<std::unique_ptr<elf::ElfFile>> needed_libraries(const elf::ElfFile& target, const std::string& target_path,
                                                            const std::vector<std::string>& extra_dirs,
                                                            std::vector<std::string>& notes) {
  std::vector<std::string> dirs = extra_dirs;
  if (const char* env = std::getenv("LD_LIBRARY_PATH")) {
    std::string s = env;
    for (size_t start = 0; start <= s.size();) {
      size_t colon = s.find(':', start);
      if (colon == std::string::npos) colon = s.size();
      if (colon > start) dirs.push_back(s.substr(start, colon - start));
      start = colon + 1;
    }
  }
  dirs.push_back(fs::path(target_path).parent_path().string());
  for (const char* d : {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib",
                        "/usr/lib", "/usr/local/lib"})
    dirs.push_back(d);

  std::vector<std::unique_ptr<elf::ElfFile>> libs;
  std::set<std::string> seen;
  std::vector<std::string> queue(target.needed().begin(), target.needed().end());
  for (size_t i = 0; i < queue.size(); ++i) {
    const std::string name = queue[i];
    if (!seen.insert(name).second) continue;
    bool found = false;
    for (const auto& dir : dirs) {
      fs::path candidate = fs::path(dir) / name;
      std::error_code ec;
      if (!fs::exists(candidate, ec)) continue;
      try {
        auto lib = std::make_unique<elf::ElfFile>(elf::ElfFile::open(candidate.string()));
        for (const auto& n : lib->needed()) queue.push_back(n);
        libs.push_back(std::move(lib));
        found = true;
        break;
      } catch (const Error&) {
        continue;  // wrong architecture or not ELF: keep looking
      }
    }
    if (!found) notes.push_back(fmt::format("needed library {} not found here; its symbols are checked at apply", name));
  }
  return libs;
}

bool defines(const elf::ElfFile& file, const std::string& name, bool statics_too) {
  for (const auto& s : file.dynamic_symbols())
    if (s.defined() && s.name == name && s.default_version) return true;
  for (const auto& s : file.symbols())
    if (s.defined() && s.name == name && (statics_too || s.bind != STB_LOCAL)) return true;
  return false;
}

// Stack bytes a thunk copies when neither function's use of stack arguments
// could be worked out: 32 eight-byte arguments, far beyond real signatures.
constexpr uint64_t kUnknownStackArgumentBytes = 256;

// gcc's interprocedural register allocation lets callers keep values in
// caller-saved registers across a call to a function known not to write them.
// Finds the registers the old function provably leaves alone and the new one
// may write: the redirect must preserve those for such callers.
void register_contract(const elf::ElfFile& target, const TargetView& view, const elf::ElfFile& object,
                       patchfile::Replacement& r, PackResult& result) {
  auto& notes = result.notes;
  std::map<uint64_t, const elf::Symbol*> by_address;
  for (const auto* s : view.functions) by_address.emplace(s->value, s);
  redirect::CalleeLookup callee = [&](RemoteAddr at) -> std::optional<std::pair<RemoteAddr, std::span<const uint8_t>>> {
    auto it = by_address.find(at.value());
    if (it == by_address.end()) return std::nullopt;
    auto code = target.bytes_at_vaddr(it->second->value, it->second->size);
    if (code.size() != it->second->size) return std::nullopt;
    return std::make_pair(at, code);
  };
  auto old_code = target.bytes_at_vaddr(r.target_value, r.target_size);
  auto old_fn = redirect::analyze_clobbers(RemoteAddr(r.target_value), old_code, callee);
  if (!old_fn.complete) result.unknown_contracts.emplace(r.spelling, old_fn.why_incomplete);

  const elf::Symbol* fresh = nullptr;
  for (const auto& s : object.symbols())
    if (s.name == r.new_symbol && s.defined() && s.shndx < object.sections().size()) fresh = &s;
  if (!fresh) return;  // parse() of the finished patch reports it
  const auto& section = object.sections()[fresh->shndx];
  auto bytes = object.section_bytes(section);
  if (fresh->value + fresh->size > bytes.size()) return;
  std::vector<uint64_t> fields;
  for (const auto& rel : object.relocations_for(section))
    if (rel.offset >= fresh->value && rel.offset < fresh->value + fresh->size) fields.push_back(rel.offset - fresh->value);
  auto new_fn = redirect::analyze_unlinked_clobbers(bytes.subspan(fresh->value, fresh->size), fields);

  r.preserve = redirect::registers_to_preserve(old_fn, new_fn);
  if (r.preserve == 0) return;
  int64_t stack = old_fn.stack_argument_bytes >= 0 ? old_fn.stack_argument_bytes : new_fn.stack_argument_bytes;
  r.stack_argument_bytes = stack >= 0 ? static_cast<uint64_t>(stack) : kUnknownStackArgumentBytes;
  notes.push_back(fmt::format("{} leaves {} alone, which callers may rely on (gcc -fipa-ra); {} may write them, so "
                              "calls go through a thunk that preserves them",
                              r.symbol, redirect::describe_registers(r.preserve), r.new_symbol));
}

// gcc may have made specialised copies of the function (NAME.constprop.N,
// NAME.isra.N, NAME.part.N) that some callers call instead; replacing NAME does
// not reach them. Say so: the author may need to replace them too.
void warn_about_clones(const TargetView& view, const patchfile::Replacement& r, std::vector<std::string>& notes) {
  std::set<std::string> clones;
  for (const auto* s : view.functions) {
    if (s->name.size() <= r.symbol.size() || s->name.rfind(r.symbol + ".", 0) != 0) continue;
    if (!r.file.empty() && s->file != r.file) continue;
    std::string_view rest = std::string_view(s->name).substr(r.symbol.size() + 1);
    if (rest.starts_with("constprop") || rest.starts_with("isra") || rest.starts_with("part")) clones.insert(s->name);
  }
  if (clones.empty()) return;
  std::string list;
  for (const auto& c : clones) list += (list.empty() ? "" : ", ") + c;
  notes.push_back(fmt::format("{} also exists as gcc's specialised cop{} {}; callers of {} keep running the old code",
                              r.symbol, clones.size() == 1 ? "y" : "ies", list, clones.size() == 1 ? "it" : "them"));
}

}  // namespace

PackResult pack(const PackOptions& options) {
  auto bytes = read_whole_file(options.object);
  auto object = elf::ElfFile::parse(bytes, options.object);
  if (object.type() != ET_REL) fail("{}: not a relocatable object (compile the patch with cc -c)", options.object);
  // What the author asked for, as the header's macros recorded it.
  std::vector<ReplaceRequest> replace;
  for (const auto& [old_field, new_field] : read_pairs(object, ".suture.replace"))
    replace.push_back({read_string(object, old_field), function_name(object, new_field)});
  if (replace.empty())
    fail("{}: no SUTURE_REPLACE records (include <suture/patch.h> and mark each replacement)", options.object);
  std::vector<BindRequest> bind;
  for (const auto& [local_field, target_field] : read_pairs(object, ".suture.bind"))
    bind.push_back({read_string(object, local_field), read_string(object, target_field)});
  return pack_requests(options, std::move(bytes), replace, bind);
}

PackResult pack_requests(const PackOptions& options, std::vector<uint8_t> object_bytes,
                         const std::vector<ReplaceRequest>& replace, const std::vector<BindRequest>& bind) {
  PackResult result;
  auto target = elf::ElfFile::open(options.target);
  if (target.type() != ET_EXEC && target.type() != ET_DYN)
    fail("{}: not an executable or shared library", options.target);
  if (target.build_id().empty())
    fail("{}: has no build-id (link it with -Wl,--build-id); patches are keyed by build-id", options.target);
  auto object = elf::ElfFile::parse(object_bytes, options.object);
  if (object.type() != ET_REL) fail("{}: not a relocatable object (compile the patch with cc -c)", options.object);

  TargetView view(target, options.target);
  auto& patch = result.patch;
  patch.name = options.name.empty() ? fs::path(options.object).stem().string() : options.name;
  patch.target_build_id = target.build_id();
  patch.target_name = target.soname().empty() ? fs::path(options.target).filename().string() : target.soname();
  patch.created_unix = static_cast<uint64_t>(std::time(nullptr));

  std::set<std::string> replaced;
  for (const auto& request : replace) {
    const auto& spelling = request.spelling;
    auto r = resolve_old(view, spelling, options.object);
    r.new_symbol = request.new_symbol;
    if (!replaced.insert(r.symbol + "@" + r.file).second)
      fail("{}: {} is replaced twice", options.object, spelling);
    // The entry must be able to take a jump; check it now, against the file's bytes.
    auto code = target.bytes_at_vaddr(r.target_value, r.target_size);
    if (code.size() != r.target_size)
      fail("{}: {}: its code is not in the file", options.target, r.symbol);
    redirect::plan_entry_jump(spelling, RemoteAddr(r.target_value), code, RemoteAddr(r.target_value + 0x1000));
    register_contract(target, view, object, r, result);
    warn_about_clones(view, r, result.notes);
    patch.replacements.push_back(std::move(r));
  }

  std::set<std::string> bound;
  for (const auto& request : bind) {
    patchfile::Binding b;
    b.local = request.local;
    auto [file, name] = split_spelling(request.target);
    b.symbol = name;
    b.file = file;
    bool found = false;
    auto check = [&](const std::vector<elf::Symbol>& symbols) {
      for (const auto& s : symbols)
        if (s.defined() && s.name == name && file_matches(s.file, file)) found = true;
    };
    check(target.symbols());
    if (view.debug) check(view.debug->symbols());
    check(target.dynamic_symbols());
    if (!found) fail("{}: SUTURE_BIND({}, {}): {} has no such symbol", options.object, b.local, request.target,
                     options.target);
    bound.insert(b.local);
    patch.bindings.push_back(std::move(b));
  }

  // Every undefined symbol must resolve in the target or the libraries it needs.
  size_t notes_before = result.notes.size();
  auto libs = needed_libraries(target, options.target, options.library_path, result.notes);
  bool all_libraries_found = result.notes.size() == notes_before;
  std::vector<std::string> unresolved;
  for (const auto& s : object.symbols()) {
    if (s.index == 0 || s.defined() || s.name.empty() || bound.count(s.name)) continue;
    if (s.name == "_GLOBAL_OFFSET_TABLE_") continue;  // the patch's own table
    bool ok = defines(target, s.name, true) || (view.debug && defines(*view.debug, s.name, true));
    for (const auto& lib : libs) ok = ok || defines(*lib, s.name, false);
    if (!ok) unresolved.push_back(s.name);
  }
  if (!unresolved.empty()) {
    std::string list;
    for (const auto& n : unresolved) list += (list.empty() ? "" : ", ") + n;
    if (options.allow_undefined || !all_libraries_found)
      result.notes.push_back("not found in the target or its libraries, left to apply: " + list);
    else
      fail("{}: undefined symbol{} not found in {} or the libraries it needs: {}", options.object,
           unresolved.size() > 1 ? "s" : "", options.target, list);
  }

  patch.object = std::move(object_bytes);
  patchfile::assign_id(patch);
  // Parse what we are about to write, exactly as apply will.
  patchfile::parse(patchfile::serialize(patch), options.object);
  return result;
}

}  // namespace suture::build
