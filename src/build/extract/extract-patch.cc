// Extraction: cut the patch out of the patched object.
//
// Problem. The patched translation unit, compiled with -ffunction-sections
// -fdata-sections, holds every function and variable of the file, each in a
// section of its own. The patch must carry only what changed or is new, and must
// use the running program's copies of everything else: its unchanged functions,
// and above all its data, whose state has to survive the patch.
//
// Approach, in three phases over the patched object's sections:
//  1. Seed. The section of every changed and new function (and of its `.cold`
//     part, which gcc splits into `.text.unlikely.NAME` and reaches by jumps) and
//     of every new variable is included. Each must hold nothing else that is
//     named, or copying it whole would bring along code or data that did not
//     change.
//  2. Close. Included sections refer to others through relocations. A reference
//     to a section that holds no named symbol (string literals in .rodata.str*,
//     constants in .rodata.cst*, jump tables in .rodata.NAME) is anonymous
//     data that only this code can use: it is included whole, and its own
//     relocations are followed in turn.
//  3. Rewrite references. Anything else that included code refers to stays in
//     the running program: globals become undefined symbols of the same name;
//     a static `x` becomes an undefined alias bound (patchfile::Binding) to the
//     program's own `x` of this source file, named as the original object
//     names it (the differ's pairing: gcc may have renumbered `counter.0` to
//     `counter.1`, or a clone `f.part.0` to `f.part.1`, in the rebuild); a section-symbol reference into a
//     section that stays behind (gcc writes `.bss+4` for some statics) is turned
//     into a reference to the named symbol at that offset, with the addend moved
//     by the symbol's value, which the final link keeps exact.
// Each changed function `f` is defined under a new name and reported as a
// Replacement of `f` (again by the original's name); its old name is not defined by the patch, so the patch's
// own calls to `f` go to the new code and nothing in the patch clashes with the
// program's `f`.
//
// Names. The engine and `ld -r` see every patch object of one binary together, so
// names that stand for statics of one file carry a hash of the file:
// `f.suture.1a2b3c4d` for a changed static function (and for a changed inline or
// template function of a COMDAT group, which every unit that uses it compiles),
// `x.suture.ref.1a2b3c4d` for the alias of a static variable; a changed global
// `f` becomes `f.suture`.
//
// Rejected: rewriting the patched object in place (keeping every section and
// turning the unwanted ones into nothing) leaves the section-symbol references
// to unchanged data pointing at a copy; copying only functions and resolving
// strings by content duplicates the differ's work. Debug sections are not
// carried; the unwind records of the code that comes along are, with the LSDAs
// and personality pointers they use (unwind-tables.h), so that exceptions cross
// patch frames.
#include "build/extract/extract-patch.h"

#include <elf.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "build/extract/relocatable-writer.h"
#include "build/extract/unwind-tables.h"
#include "common/error.h"

namespace suture::build::extract {
namespace {

using elf::ElfFile;
using elf::Section;
using elf::Symbol;

// A symbol that names a function or variable; assemblers keep some local labels
// (`.LC0` of a string in a mergeable section) that name nothing.
bool is_named(const Symbol& s) {
  return !s.name.empty() && !s.name.starts_with(".L") && s.defined() && s.shndx < SHN_LORESERVE &&
         (s.type == STT_FUNC || s.type == STT_OBJECT || s.type == STT_TLS || s.type == STT_GNU_IFUNC ||
          s.type == STT_NOTYPE);
}

bool is_function(const Symbol& s) { return s.type == STT_FUNC || s.type == STT_GNU_IFUNC; }

// "foo.cold" -> "foo", "foo.part.0.cold.1" -> "foo.part.0": the function a cold
// fragment belongs to, as the differ names it.
std::optional<std::string_view> cold_parent(std::string_view name) {
  size_t at = name.rfind(".cold");
  if (at == std::string_view::npos || at == 0) return std::nullopt;
  std::string_view rest = name.substr(at + 5);
  if (!rest.empty() && (rest[0] != '.' || rest.size() == 1 ||
                        !std::all_of(rest.begin() + 1, rest.end(), [](char c) { return c >= '0' && c <= '9'; })))
    return std::nullopt;
  return name.substr(0, at);
}

// Relocation types whose addend also holds the distance from the field to the
// end of its instruction (S + A - P), so the byte referred to is at A + 4 or a
// little beyond.
bool is_pc_relative(uint32_t type) {
  switch (type) {
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
    case R_X86_64_PC64:
    case R_X86_64_PC16:
    case R_X86_64_PC8:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
      return true;
    default:
      return false;
  }
}

std::string file_tag(std::string_view source_file) {
  uint32_t h = 2166136261u;  // FNV-1a 32
  for (char c : source_file) {
    h ^= static_cast<uint8_t>(c);
    h *= 16777619u;
  }
  return fmt::format("{:08x}", h);
}

// What the phases share.
class Extractor {
 public:
  Extractor(const ElfFile& patched, std::string_view source_file)
      : object_(patched), source_file_(source_file), tag_(file_tag(source_file)),
        named_in_(patched.sections().size()) {
    for (const Symbol& s : object_.symbols()) {
      names_.insert(s.name);
      if (is_named(s) && s.shndx < named_in_.size()) named_in_[s.shndx].push_back(&s);
    }
  }

  // Phase 1.
  void seed(const diff::ObjectDiff& diff) {
    original_name_ = &diff.original_name;
    for (const diff::Change& change : diff.changes) {
      switch (change.kind) {
        case diff::Change::changed_function:
        case diff::Change::new_function: {
          const Symbol& f = find_defined(change.symbol, true);
          bool changed = change.kind == diff::Change::changed_function;
          if (changed) renamed_[f.index] = new_name(f);
          owned_.insert(f.index);
          include(f.shndx, fmt::format("{} {}: {}", diff::kind_name(change.kind), f.name, change.reason));
          for (const Symbol& s : object_.symbols()) {
            if (!is_named(s) || !is_function(s) || cold_parent(s.name) != std::string_view(f.name)) continue;
            owned_.insert(s.index);
            if (changed) demoted_.insert(s.index);
            include(s.shndx, fmt::format("cold part {} of {}", s.name, f.name));
          }
          if (changed) {
            // The running program knows the function by the original's name.
            std::string old = change.original.empty() ? f.name : change.original;
            patchfile::Replacement r;
            r.spelling = f.bind == STB_LOCAL ? fmt::format("{}:{}", source_file_, old) : old;
            r.symbol = old;
            r.file = f.bind == STB_LOCAL ? std::string(source_file_) : "";
            r.new_symbol = renamed_[f.index];
            out_.replacements.push_back(std::move(r));
          }
          break;
        }
        case diff::Change::new_data: {
          const Symbol& x = find_defined(change.symbol, false);
          owned_.insert(x.index);
          include(x.shndx, fmt::format("new data {}: {}", x.name, change.reason));
          break;
        }
        case diff::Change::changed_data:      // refused: diff.errors says why
        case diff::Change::removed_function:  // the program keeps it; nothing calls it from the patch
          break;
      }
    }
    // Copying a section whole must not bring along anything that did not change.
    for (size_t index : order_) {
      for (const Symbol* s : named_in_[index]) {
        if (owned_.count(s->index) || s->type == STT_NOTYPE) continue;
        fail("{}: {}: {}: shares its section with {}, which the patch does not replace; compile with "
             "-ffunction-sections -fdata-sections",
             object_.name(), section(index).name, s->name, owner_of(index));
      }
    }
  }

  // Phase 2.
  void close() {
    for (size_t next = 0; next < order_.size(); ++next) {
      const Section& from = section(order_[next]);
      for (const elf::Relocation& r : object_.relocations_for(from)) {
        const Symbol& s = object_.symbols().at(r.symbol);
        bool anonymous_reference = s.type == STT_SECTION || (s.type == STT_NOTYPE && s.name.starts_with(".L"));
        if (!anonymous_reference || s.shndx == 0 || s.shndx >= SHN_LORESERVE || included_.count(s.shndx)) continue;
        const Section& to = section(s.shndx);
        if (!named_in_[s.shndx].empty() || !(to.flags & SHF_ALLOC)) continue;
        include(s.shndx, fmt::format("anonymous {}data used by {}{}", (to.flags & SHF_WRITE) ? "writable " : "",
                                     from.name,
                                     (to.flags & SHF_WRITE) ? " (copied: the patch gets its own copy)" : ""));
      }
    }
  }

  // The .eh_frame records of the included code, and the exception tables and
  // personality pointers they use (the patched object's own; they come along).
  void keep_unwind() {
    std::vector<size_t> pending;
    for (const Section& s : object_.sections()) {
      if (s.type != SHT_X86_64_UNWIND && s.name != ".eh_frame") continue;
      KeptUnwindTables kept =
          keep_unwind_tables(object_, s, [&](size_t index) { return included_.count(index) != 0; });
      for (elf::Relocation& r : kept.relocations) {
        r.offset += unwind_bytes_.size();
        unwind_relocations_.emplace_back(r, s.index);
      }
      unwind_bytes_.insert(unwind_bytes_.end(), kept.bytes.begin(), kept.bytes.end());
      pending.insert(pending.end(), kept.referenced_sections.begin(), kept.referenced_sections.end());
    }
    while (!pending.empty()) {
      const size_t index = pending.back();
      pending.pop_back();
      const Section& to = section(index);
      const bool exception_data =
          to.name.starts_with(".gcc_except_table") || to.name.find("DW.ref.") != std::string::npos;
      if (!(to.flags & SHF_ALLOC) || !exception_data || included_.count(index)) continue;
      include(index, "exception-handling data of included code");
      for (const elf::Relocation& r : object_.relocations_for(to)) {
        const Symbol& s = object_.symbols().at(r.symbol);
        if (s.defined() && s.shndx < SHN_LORESERVE) pending.push_back(s.shndx);
      }
    }
  }

  // Phase 3, and the object.
  Extracted finish() {
    std::string file = source_file_.empty() ? std::filesystem::path(object_.name()).filename().string()
                                            : std::string(source_file_);
    writer_.add_symbol({file, STT_FILE, STB_LOCAL, STV_DEFAULT, SHN_ABS, 0, 0});
    for (size_t index : order_) {
      const Section& s = section(index);
      OutSection out;
      out.name = s.name;
      out.type = s.type;
      out.flags = s.flags & ~static_cast<uint64_t>(SHF_GROUP);  // the patch's copy belongs to no COMDAT group
      out.align = s.align;
      out.entsize = s.entsize;
      out.size = s.size;
      auto bytes = object_.section_bytes(s);
      out.bytes.assign(bytes.begin(), bytes.end());
      uint16_t at = writer_.add_section(std::move(out));
      new_index_[index] = at;
      section_symbol_[index] = writer_.add_symbol({"", STT_SECTION, STB_LOCAL, STV_DEFAULT, at, 0, 0});
    }
    // Symbols defined in included sections keep their place in the patched
    // object's order; a changed function takes its new name and is local.
    for (const Symbol& s : object_.symbols()) {
      if (s.index == 0 || s.type == STT_SECTION || s.type == STT_FILE || !s.defined() || s.shndx >= SHN_LORESERVE ||
          !included_.count(s.shndx))
        continue;
      OutSymbol o{s.name, s.type, s.bind, s.visibility, new_index_.at(s.shndx), s.value, s.size};
      if (auto it = renamed_.find(s.index); it != renamed_.end()) {
        o.name = it->second;
        o.bind = STB_LOCAL;
        o.visibility = STV_DEFAULT;
      } else if (demoted_.count(s.index) || in_changed_section(s.shndx)) {
        o.bind = STB_LOCAL;  // no second definition of a name the program defines
        o.visibility = STV_DEFAULT;
      }
      defined_[s.index] = writer_.add_symbol(std::move(o));
    }
    for (size_t index : order_) {
      std::vector<OutRelocation> relocations;
      for (const elf::Relocation& r : object_.relocations_for(section(index))) relocations.push_back(rewrite(r, index));
      writer_.section(new_index_.at(index)).relocations = std::move(relocations);
    }
    finish_unwind();
    out_.object = writer_.write();
    return std::move(out_);
  }

 private:
  const Section& section(size_t index) const { return object_.sections().at(index); }

  void finish_unwind() {
    if (unwind_bytes_.empty()) return;
    OutSection out;
    out.name = ".eh_frame";
    out.type = SHT_X86_64_UNWIND;
    out.flags = SHF_ALLOC;
    out.align = 8;
    out.size = unwind_bytes_.size();
    out.bytes = unwind_bytes_;
    const uint16_t at = writer_.add_section(std::move(out));
    std::vector<OutRelocation> relocations;
    for (const auto& [r, from] : unwind_relocations_) relocations.push_back(rewrite(r, from));
    writer_.section(at).relocations = std::move(relocations);
  }

  const Symbol& find_defined(const std::string& name, bool function) const {
    for (const Symbol& s : object_.symbols())
      if (s.name == name && is_named(s) && is_function(s) == function) return s;
    fail("{}: the differ names {} {}, which the object does not define", object_.name(),
         function ? "function" : "variable", name);
  }

  // A static's new name carries the file's tag, so does a function of a COMDAT
  // group (an inline or template function): every unit that uses it has its
  // copy, and the copies of several units may meet in one patch.
  std::string new_name(const Symbol& f) {
    bool per_unit = f.bind == STB_LOCAL || (section(f.shndx).flags & SHF_GROUP);
    std::string base = per_unit ? fmt::format("{}.suture.{}", f.name, tag_) : f.name + ".suture";
    return unique(base);
  }

  std::string unique(const std::string& base) {
    std::string name = base;
    for (int n = 1; names_.count(name); ++n) name = fmt::format("{}.{}", base, n);
    names_.insert(name);
    return name;
  }

  void include(size_t index, std::string why) {
    if (index == 0 || index >= object_.sections().size())
      fail("{}: section index {} is not a section", object_.name(), index);
    if (!included_.insert(index).second) return;
    if (section(index).type == SHT_GROUP) fail("{}: {}: cannot copy a group section", object_.name(), section(index).name);
    order_.push_back(index);
    out_.included.push_back(fmt::format("{}: {}", section(index).name, why));
    if (std::any_of(named_in_[index].begin(), named_in_[index].end(),
                    [&](const Symbol* s) { return renamed_.count(s->index); }))
      changed_sections_.insert(index);
  }

  bool in_changed_section(size_t index) const { return changed_sections_.count(index) != 0; }

  std::string owner_of(size_t index) const {
    for (const Symbol* s : named_in_[index])
      if (owned_.count(s->index)) return s->name;
    return "a changed symbol";
  }

  // The symbol of section `index` that a reference at `offset` into it means.
  const Symbol& symbol_at(size_t index, uint64_t offset) const {
    const Symbol* best = nullptr;
    for (const Symbol* s : named_in_[index]) {
      if (s->value <= offset && offset < s->value + std::max<uint64_t>(s->size, 1)) return *s;
      if (s->value <= offset && (!best || s->value > best->value)) best = s;
    }
    if (!best)
      best = *std::min_element(named_in_[index].begin(), named_in_[index].end(),
                               [](const Symbol* a, const Symbol* b) { return a->value < b->value; });
    return *best;
  }

  // The running program's name for a static of the patched object: the original
  // object's name for it, which the differ paired it with (gcc numbers statics
  // and clones in the order it meets them: tick's `counter.0` may be
  // `counter.1` after the fix gave an earlier function a `counter`).
  const std::string& running_name(const Symbol& s) const {
    auto found = original_name_->find(s.name);
    // The differ pairs functions and variables; a label keeps its name.
    if (found == original_name_->end() && s.type == STT_NOTYPE) return s.name;
    if (found == original_name_->end())
      fail("{}: {}: the new code refers to it, but it is neither in the original object nor brought by the patch",
           object_.name(), s.name);
    return found->second;
  }

  // The patch's undefined symbol for something the running program supplies.
  size_t external(const Symbol& s) {
    if (auto it = external_.find(s.index); it != external_.end()) return it->second;
    size_t handle;
    if (s.bind == STB_LOCAL) {
      const std::string& name = running_name(s);
      std::string alias = unique(fmt::format("{}.suture.ref.{}", name, tag_));
      handle = writer_.add_symbol({alias, STT_NOTYPE, STB_GLOBAL, STV_DEFAULT, SHN_UNDEF, 0, 0});
      out_.bindings.push_back({alias, name, std::string(source_file_)});
    } else if (auto it = global_.find(s.name); it != global_.end()) {
      handle = it->second;
    } else {
      uint8_t bind = s.bind == STB_WEAK && !s.defined() ? STB_WEAK : STB_GLOBAL;
      handle = writer_.add_symbol({s.name, STT_NOTYPE, bind, STV_DEFAULT, SHN_UNDEF, 0, 0});
      global_[s.name] = handle;
    }
    external_[s.index] = handle;
    return handle;
  }

  OutRelocation rewrite(const elf::Relocation& r, size_t from) {
    OutRelocation out{r.offset, r.type, 0, r.addend};
    if (r.symbol == 0) return out;
    const Symbol& s = object_.symbols().at(r.symbol);
    if (s.shndx == SHN_ABS && s.type != STT_SECTION) {
      if (!defined_.count(s.index))
        defined_[s.index] = writer_.add_symbol({s.name, s.type, s.bind, s.visibility, SHN_ABS, s.value, s.size});
      out.symbol = defined_[s.index];
      return out;
    }
    if (!s.defined() || s.shndx == SHN_COMMON) {
      out.symbol = external(s);
      return out;
    }
    if (s.shndx >= SHN_LORESERVE)
      fail("{}: {}: relocation at +{:#x} refers to {} in special section {:#x}", object_.name(), section(from).name,
           r.offset, s.name, s.shndx);
    if (included_.count(s.shndx)) {
      out.symbol = s.type == STT_SECTION ? section_symbol_.at(s.shndx) : defined_.at(s.index);
      return out;
    }
    bool label = s.type == STT_SECTION || (s.type == STT_NOTYPE && s.name.starts_with(".L"));
    if (!label) {
      out.symbol = external(s);
      return out;
    }
    // `.bss+8`: name the variable the program keeps there.
    if (named_in_[s.shndx].empty())
      fail("{}: {}: relocation at +{:#x} refers to {}, which holds nothing the patch can name", object_.name(),
           section(from).name, r.offset, section(s.shndx).name);
    int64_t from_start = static_cast<int64_t>(s.value) + r.addend;  // S + A, measured from the section's start
    int64_t target = from_start + (is_pc_relative(r.type) ? 4 : 0);
    const Symbol& named = symbol_at(s.shndx, target < 0 ? 0 : static_cast<uint64_t>(target));
    out.symbol = external(named);
    out.addend = from_start - static_cast<int64_t>(named.value);
    return out;
  }

  const ElfFile& object_;
  const std::map<std::string, std::string>* original_name_ = nullptr;  // from the differ
  std::string_view source_file_;
  std::string tag_;
  std::vector<std::vector<const Symbol*>> named_in_;  // named symbols of each section
  std::set<std::string> names_;                       // every name in use, for unique()
  std::set<size_t> owned_;                            // symbols the patch brings (changed, new, cold parts)
  std::map<size_t, std::string> renamed_;             // changed function -> its name in the patch
  std::set<size_t> demoted_;                          // cold parts of changed functions
  std::set<size_t> changed_sections_;
  std::set<size_t> included_;
  std::vector<size_t> order_;
  std::map<size_t, uint16_t> new_index_;              // patched section -> output section
  std::map<size_t, size_t> section_symbol_;           // patched section -> output symbol handle
  std::map<size_t, size_t> defined_;                  // patched symbol -> output symbol handle
  std::map<size_t, size_t> external_;                 // patched symbol -> undefined output symbol
  std::map<std::string, size_t> global_;
  std::vector<uint8_t> unwind_bytes_;                          // the patch's .eh_frame
  std::vector<std::pair<elf::Relocation, size_t>> unwind_relocations_;  // with the section they came from
  RelocatableWriter writer_;
  Extracted out_;
};

}  // namespace

Extracted extract_patch(const elf::ElfFile& patched, const diff::ObjectDiff& diff, std::string_view source_file) {
  if (patched.type() != ET_REL) fail("{}: not a relocatable object", patched.name());
  if (!diff.errors.empty()) {
    std::string all;
    for (const std::string& e : diff.errors) all += "\n  " + e;
    fail("{}: the change cannot be patched live:{}", patched.name(), all);
  }
  Extractor extractor(patched, source_file);
  // Which sections hold what changed or is new.
  extractor.seed(diff);
  // The anonymous constants that code uses come along whole.
  extractor.close();
  // Their unwind records, so that exceptions cross them; what those use comes along.
  extractor.keep_unwind();
  extractor.close();
  // Everything else is the running program's: refer to it by name.
  return extractor.finish();
}

}  // namespace suture::build::extract
