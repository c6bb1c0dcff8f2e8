// Comparing two builds of one translation unit, function by function.
//
// The problem. `suture build` compiles the source tree twice, before and after the
// fix, and must name exactly the functions whose machine code changed, the
// functions and variables that are new, and the changes to existing data that no
// live patch can make (the running program's variables hold state). Too little
// and the fix is not applied; too much and unchanged code is replaced for nothing,
// with every replaced function one more thing that must be safe to switch.
//
// The approach. Both objects are compiled with -ffunction-sections
// -fdata-sections, so every function and variable sits in a section of its own.
// An *entity* is a defined function or data symbol together with its bytes in that
// section and the relocations that fall inside them. Then:
//
//  1. Correlate. Entities are paired by name. Global names are kept as they are
//     (C++ names are mangled, so overloads and namespaces are already apart). Local
//     names lose gcc's numeric suffixes, component by component: `counter.0` is
//     `counter`, `foo.part.0` is `foo.part`, `foo.constprop.0.isra.0` is
//     `foo.constprop.isra`. The numbers count clones and statics in the order gcc
//     met them, so they shift when an unrelated function gains a static. When the
//     stripped name is not unique (two functions each with a `static int counter`),
//     the entities are told apart by the functions that refer to them; failing
//     that, by their exact names, but only when both sides carry the very same
//     names (shifted numbers could pair the wrong two); a single one left on each
//     side pairs by elimination. Data still ambiguous after that is refused: we
//     would not know which running variable the new code must use.
//
//  2. Compare bytes modulo relocations. The bytes a relocation will overwrite are
//     zeroed on both sides, then compared; the first difference is the reason.
//
//  3. Compare relocations one by one, symbolically: same offset, same type, and the
//     same *target*. A target is resolved first to what it means, then named in a
//     way both objects agree on:
//       - a function or variable: the name of the correlated entity (so
//         `counter.1` in the patched object equals `counter.0` in the original when
//         they were paired), plus the offset into it;
//       - a local label or section symbol inside a function's or variable's section
//         (gas rewrites references to local symbols that way): the entity covering
//         that offset, as above;
//       - a mergeable string section (.rodata.str1.1 and kin): the string's
//         contents, so a changed literal counts as a change and a literal that only
//         moved (another offset, another section, another .LC number) does not;
//       - a mergeable constant section (.rodata.cst8 ...): the constant's bytes;
//       - any other anonymous section (a jump table): its contents, compared the
//         same way, recursively;
//       - an undefined symbol: its name.
//     For PC-relative relocations in code the addend also holds the distance from
//     the relocated field to the end of its instruction (-4 for `lea x(%rip)`, -5
//     when an imm8 follows). We decode the instruction with Zydis to remove that
//     distance, so the offset into a string section is exact.
//
//  4. Fold `.cold` fragments into their parent. gcc moves unlikely paths of `foo`
//     into `foo.cold`, reached by jumps, never by calls: it cannot be replaced on its
//     own, so a change there (or a cold part that appears or vanishes) is reported
//     as a change of `foo`. `.part`, `.isra` and `.constprop` clones are called
//     like ordinary functions and are reported as functions of their own; their
//     callers change too when they call a different clone.
//
//  5. Report. A paired function that differs is a changed function; an unpaired
//     one is new (or removed). An unpaired variable is new data. A paired variable
//     whose size, initial value or writability changed is listed as changed data
//     and refused with an error naming it and the functions that use it: its
//     running copy holds state that the new initial value would not reach, and a
//     new size means a new type layout that the old code still assumes.
//
//  6. Forgive moved line numbers. A fix that adds a line moves every `__LINE__`
//     below it: the line is an immediate (`mov $41,%edx` before
//     `call __assert_fail`) or part of a string ("util.c:41"). kpatch forgives a
//     `mov` of an immediate into %esi/%edx when the next call it meets is one of
//     the kernel's warning functions. We take the same shape for user space,
//     with a proof of where the value goes instead of a list of kernel names: the
//     two instructions differ only in the immediate, the register is an argument
//     register, and from the `mov` on, in straight-line code, nothing reads or
//     writes it until a direct call (or tail jump) whose argument in that
//     position is a line: the third of the C library's __assert_fail,
//     __assert_perror_fail and __assert, or the argument right after one that
//     some call of the same callee, in either object, is given `__FILE__` in
//     (a string naming this unit's source file or a header, right before an
//     immediate: `log_at(__FILE__, __LINE__, ...)`, Redis's `_serverAssert`). A
//     callee defined in the object may be known to keep the register (-fipa-ra),
//     so then the register must also be dead after the call. A string may differ
//     only in numbers right after "FILE.c:" (the same kind of file name). The
//     line is still printed when the assertion fails: that output, and nothing
//     else, is what we accept to keep old (a number written by hand where a
//     line goes looks the same and is forgiven too). Everything else,
//     relocations included, must be equal; a line used as a value
//     (`return __LINE__`), or passed without this unit's file name before it
//     (`set_level("net", 3)`, `build_with("other.c", 2)`), stays a change.
//     Forgiven functions are listed with the lines that moved, for the summary.
//
// What gcc concluded about a callee. Within a translation unit gcc uses what it
// proved about a function when it compiles the callers: the registers it
// clobbers (-fipa-ra), pure/const, which memory it reads and writes (modref),
// constants all its callers pass (IPA-CP), the parameters it ignores (IPA-SRA),
// whether it returns, what it returns, whether to inline or split it (.part).
// All of that is visible to a comparison of compiled code, because both builds
// compile every caller in the unit again against the callee as it now is: a
// caller that relied on the old conclusions comes out different (sum3 moving
// its values from caller-saved to callee-saved registers once its static
// callee calls out, in the tests) and is patched with the callee (unless its
// only difference is the registers -fipa-ra let it keep across calls: then
// register-allocation.cc proves so and keeps the running copy, and the
// callee's thunk keeps those registers). For that, `references` and
// `patched_references` give each object's call graph. Callers in
// other units know nothing but the ABI, so they hold nothing to invalidate.
// A caller that comes out byte for byte the same, relocations included, is
// compiled the same against the new callee as against the old, so the running
// copy of it is correct with the new callee too; that holds for clones as well
// (a clone's callers all live in its unit, and one whose clone changed its
// parameters, or disappeared, or was replaced by another, passes other
// arguments or calls another symbol and is a change). The tests show both
// sides from gcc's own output: check.part.0 vanishing changes both its callers;
// score.isra.0 keeping its one int parameter and its code while that int
// becomes another field of the struct changes only the caller, which is all
// that has to change.
// What byte comparison does not give is the *name*. The running program knows
// a static, clone or cold part by the original object's name, and gcc numbers
// them in the order it meets them: a fix that gives another function a
// `counter`, or another clone of the same function, renumbers the rest. A
// replacement or a reference spelled with the patched object's name would
// redirect, or call, another clone with another calling convention, or count in
// another function's static. So the pairing is part of the result
// (`original_name`, `Change::original`), and extraction and the fidelity check
// name everything the running program already has by the original's name.
// What remains outside: link-time optimisation (callers in other units compiled
// against conclusions about this one), and a removed function that the running
// program can still reach through data (its callers in code all changed).
//
// Rejected alternatives. Diffing the assembly (libcare) sees the compiler's text
// before the assembler relaxes and numbers it, and breaks on inline asm and on
// build systems that do not let us stop after `-S`. Comparing whole sections
// without symbolic relocations reports every function that refers to a moved
// string or a renumbered static. Hashing functions instead of comparing them loses
// the reason, and the reason is what a user reads first when the patch is larger
// than expected.
#include "build/diff/object-diff.h"

#include <Zydis/Zydis.h>
#include <elf.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

namespace suture::build::diff {
namespace {

using elf::ElfFile;
using elf::Relocation;
using elf::Section;
using elf::Symbol;

// --- Names ---

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// gcc's numbering removed from a local name: "foo.part.0" -> "foo.part".
std::string strip_numbers(std::string_view name) {
  std::string out;
  size_t start = 0;
  for (bool first = true;; first = false) {
    size_t dot = name.find('.', start);
    std::string_view part = name.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (first || !all_digits(part)) {
      if (!first) out += '.';
      out += part;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return out;
}

// "foo.cold" -> "foo", "foo.part.0.cold" -> "foo.part.0"; nullopt for other names.
std::optional<std::string_view> cold_parent_name(std::string_view name) {
  for (size_t at = name.find(".cold"); at != std::string_view::npos; at = name.find(".cold", at + 1)) {
    size_t end = at + 5;
    if (at > 0 && (end == name.size() || name[end] == '.')) return name.substr(0, at);
  }
  return std::nullopt;
}

std::string quoted(std::string_view text) {
  constexpr size_t limit = 60;
  std::string out = "\"";
  for (size_t i = 0; i < text.size() && i < limit; ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '"' || c == '\\') out += {'\\', static_cast<char>(c)};
    else if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  if (text.size() > limit) out += "...";
  return out + "\"";
}

// --- Relocations ---

bool pc_relative(uint32_t type) {
  switch (type) {
    case R_X86_64_PC8:
    case R_X86_64_PC16:
    case R_X86_64_PC32:
    case R_X86_64_PC64:
    case R_X86_64_PLT32:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
    case R_X86_64_GOTPCREL64:
    case R_X86_64_GOTPC32:
    case R_X86_64_GOTPC64:
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
    case R_X86_64_GOTTPOFF:
    case R_X86_64_GOTPC32_TLSDESC:
      return true;
    default:
      return false;
  }
}

std::string relocation_type_name(uint32_t type) {
  switch (type) {
    case R_X86_64_64: return "R_X86_64_64";
    case R_X86_64_PC32: return "R_X86_64_PC32";
    case R_X86_64_PLT32: return "R_X86_64_PLT32";
    case R_X86_64_GOTPCREL: return "R_X86_64_GOTPCREL";
    case R_X86_64_32: return "R_X86_64_32";
    case R_X86_64_32S: return "R_X86_64_32S";
    case R_X86_64_GOTPCRELX: return "R_X86_64_GOTPCRELX";
    case R_X86_64_REX_GOTPCRELX: return "R_X86_64_REX_GOTPCRELX";
    default: return fmt::format("relocation type {}", type);
  }
}

// Sections whose contents make up the program. .eh_frame is allocated too, but
// describes the code rather than being part of it; it changes whenever code does.
bool tracked(const Section& section) {
  if (!(section.flags & SHF_ALLOC)) return false;
  if (section.type == SHT_X86_64_UNWIND || section.name == ".eh_frame") return false;
  return !std::string_view(section.name).starts_with(".note");
}

// --- One object, seen as entities ---

struct Entity {
  size_t symbol = 0;   // index into symbols()
  size_t section = 0;  // section index
  bool function = false;
  std::string name;
  std::string key;  // what correlation pairs by
  uint64_t begin = 0, end = 0;
  std::optional<size_t> parent;  // for a .cold fragment: the function it belongs to
  std::set<size_t> users;        // functions (parents, not fragments) that refer to it
  std::optional<size_t> match;   // the correlated entity in the other object
};

// One decoded instruction of a function, at `offset` from the function's start.
struct Instruction {
  uint64_t offset = 0;
  ZydisDecodedInstruction insn;
  std::array<ZydisDecodedOperand, ZYDIS_MAX_OPERAND_COUNT> operands;
};

// What a relocation refers to, resolved within its own object.
struct Target {
  enum Kind { entity, string, constant, anonymous, external } kind = external;
  size_t index = 0;  // entity index, or section index for `anonymous`
  std::string text;  // string contents, constant bytes, or undefined symbol name
  int64_t offset = 0;
};

class ObjectView {
 public:
  explicit ObjectView(const ElfFile& file) : file_(file) {
    collect_entities();
    link_cold_fragments();
    collect_users();
  }

  const ElfFile& file() const { return file_; }
  // The source file the object was compiled from, as its STT_FILE symbol names it.
  std::string_view unit() const {
    for (const Symbol& s : file_.symbols()) {
      if (s.type == STT_FILE && !s.name.empty()) return s.name;
    }
    return {};
  }
  std::vector<Entity>& entities() { return entities_; }
  const std::vector<Entity>& entities() const { return entities_; }
  const Section& section(size_t index) const { return file_.sections()[index]; }

  // The relocations inside an entity's bytes, by offset.
  std::vector<Relocation> relocations_in(const Entity& entity) const {
    std::vector<Relocation> found;
    for (const Relocation& r : file_.relocations_for(section(entity.section))) {
      if (r.offset >= entity.begin && r.offset < entity.end) found.push_back(r);
    }
    std::stable_sort(found.begin(), found.end(), [](const Relocation& a, const Relocation& b) {
      return a.offset < b.offset;
    });
    return found;
  }

  // The entity's bytes (zeros for .bss) with every relocated field zeroed.
  std::vector<uint8_t> masked_bytes(const Entity& entity) const {
    const Section& where = section(entity.section);
    std::vector<uint8_t> bytes(entity.end - entity.begin, 0);
    std::span<const uint8_t> contents = file_.section_bytes(where);
    if (entity.begin < contents.size()) {
      size_t count = std::min<uint64_t>(contents.size() - entity.begin, bytes.size());
      std::copy_n(contents.begin() + static_cast<ptrdiff_t>(entity.begin), count, bytes.begin());
    }
    for (const Relocation& r : relocations_in(entity)) {
      uint64_t from = r.offset - entity.begin;
      uint64_t to = std::min<uint64_t>(from + elf::relocation_width(r.type).value_or(0), bytes.size());
      std::fill(bytes.begin() + static_cast<ptrdiff_t>(from), bytes.begin() + static_cast<ptrdiff_t>(to), 0);
    }
    return bytes;
  }

  Target resolve(const Section& where, const Relocation& r) const {
    const Symbol& symbol = file_.symbols()[r.symbol];
    int64_t at = r.addend;
    if (pc_relative(r.type) && (where.flags & SHF_EXECINSTR)) at += field_to_instruction_end(where, r);
    if (!symbol.defined() || symbol.shndx >= SHN_LORESERVE || symbol.shndx >= file_.sections().size()) {
      return {Target::external, 0, symbol.name, at};
    }
    if (auto found = by_symbol_.find(r.symbol); found != by_symbol_.end()) {
      return {Target::entity, found->second, {}, at};
    }
    // A section symbol or a local label (.LC0): find what lies at that offset.
    const Section& into = section(symbol.shndx);
    int64_t offset = static_cast<int64_t>(symbol.value) + at;
    if ((into.flags & SHF_MERGE) && (into.flags & SHF_STRINGS)) return string_at(into, offset);
    if (into.flags & SHF_MERGE) return constant_at(into, offset);
    if (offset >= 0) {
      if (auto covering = entity_at(into.index, static_cast<uint64_t>(offset))) {
        return {Target::entity, *covering, {}, offset - static_cast<int64_t>(entities_[*covering].begin)};
      }
    }
    return {Target::anonymous, into.index, {}, offset};
  }

  // The entity's instructions (its bytes with relocated fields zeroed), as far as
  // they decode.
  const std::vector<Instruction>& instructions(size_t entity) const {
    auto cached = instructions_.find(entity);
    if (cached != instructions_.end()) return cached->second;
    std::vector<uint8_t> bytes = masked_bytes(entities_[entity]);
    ZydisDecoder decoder;
    [[maybe_unused]] ZyanStatus status = ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    assert(ZYAN_SUCCESS(status));
    std::vector<Instruction> list;
    for (uint64_t at = 0; at < bytes.size();) {
      Instruction i;
      i.offset = at;
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, bytes.data() + at, bytes.size() - at, &i.insn,
                                               i.operands.data())))
        break;
      at += i.insn.length;
      list.push_back(i);
    }
    return instructions_.emplace(entity, std::move(list)).first->second;
  }

  // The relocation whose field lies inside an entity's instruction, if any.
  std::optional<Relocation> relocation_in(const Entity& entity, const Instruction& i) const {
    for (const Relocation& r : relocations_in(entity)) {
      if (r.offset >= entity.begin + i.offset && r.offset < entity.begin + i.offset + i.insn.length) return r;
    }
    return std::nullopt;
  }

  // The entity whose bytes hold `offset` of section `index` (or end right there).
  std::optional<size_t> entity_at(size_t index, uint64_t offset) const {
    auto found = by_section_.find(index);
    if (found == by_section_.end()) return std::nullopt;
    std::optional<size_t> at_end;
    for (size_t i : found->second) {
      const Entity& e = entities_[i];
      if (e.begin <= offset && offset < e.end) return i;
      if (offset == e.end && !at_end) at_end = i;
    }
    return at_end;
  }

 private:
  void collect_entities() {
    const auto& symbols = file_.symbols();
    for (size_t i = 0; i < symbols.size(); ++i) {
      const Symbol& s = symbols[i];
      bool function = s.type == STT_FUNC || s.type == STT_GNU_IFUNC;
      bool data = s.type == STT_OBJECT || s.type == STT_TLS;
      if (!(function || data) || !s.defined() || s.shndx >= SHN_LORESERVE) continue;
      if (s.shndx >= file_.sections().size() || !tracked(section(s.shndx))) continue;
      Entity e;
      e.symbol = i;
      e.section = s.shndx;
      e.function = function;
      e.name = s.name;
      e.key = fmt::format("{} {} {}", function ? "function" : "data", s.bind == STB_LOCAL ? "local" : "global",
                          s.bind == STB_LOCAL ? strip_numbers(s.name) : s.name);
      e.begin = s.value;
      e.end = std::max(s.value, std::min(s.value + s.size, section(s.shndx).size));
      by_symbol_[i] = entities_.size();
      by_section_[e.section].push_back(entities_.size());
      entities_.push_back(std::move(e));
    }
    for (auto& [index, list] : by_section_) {
      std::stable_sort(list.begin(), list.end(),
                       [&](size_t a, size_t b) { return entities_[a].begin < entities_[b].begin; });
    }
  }

  void link_cold_fragments() {
    std::unordered_map<std::string_view, size_t> functions;
    for (size_t i = 0; i < entities_.size(); ++i) {
      if (entities_[i].function) functions.emplace(entities_[i].name, i);
    }
    for (Entity& e : entities_) {
      if (!e.function) continue;
      if (auto parent = cold_parent_name(e.name)) {
        if (auto found = functions.find(*parent); found != functions.end()) e.parent = found->second;
      }
    }
  }

  // Which functions refer to each entity: what tells same-named statics apart.
  void collect_users() {
    for (const Section& where : file_.sections()) {
      if (!tracked(where)) continue;
      for (const Relocation& r : file_.relocations_for(where)) {
        std::optional<size_t> user = entity_at(where.index, r.offset);
        if (!user || r.offset >= entities_[*user].end) continue;
        if (entities_[*user].parent) user = entities_[*user].parent;
        Target target = resolve(where, r);
        if (target.kind == Target::entity && target.index != *user) entities_[target.index].users.insert(*user);
      }
    }
  }

  Target string_at(const Section& into, int64_t offset) const {
    std::span<const uint8_t> bytes = file_.section_bytes(into);
    size_t width = std::max<uint64_t>(into.entsize, 1);
    if (offset < 0 || static_cast<uint64_t>(offset) >= bytes.size()) {
      return {Target::string, 0, fmt::format("<outside {}>", into.name), offset};
    }
    auto is_nul = [&](size_t at) {
      return std::all_of(bytes.begin() + static_cast<ptrdiff_t>(at),
                         bytes.begin() + static_cast<ptrdiff_t>(std::min(at + width, bytes.size())),
                         [](uint8_t b) { return b == 0; });
    };
    size_t at = static_cast<size_t>(offset) / width * width;
    size_t start = at;
    while (start >= width && !is_nul(start - width)) start -= width;
    size_t end = at;
    while (end < bytes.size() && !is_nul(end)) end += width;
    end = std::min(end, bytes.size());
    std::string text(bytes.begin() + static_cast<ptrdiff_t>(start), bytes.begin() + static_cast<ptrdiff_t>(end));
    return {Target::string, 0, std::move(text), offset - static_cast<int64_t>(start)};
  }

  Target constant_at(const Section& into, int64_t offset) const {
    std::span<const uint8_t> bytes = file_.section_bytes(into);
    if (offset < 0 || static_cast<uint64_t>(offset) >= bytes.size() || into.entsize == 0) {
      return {Target::anonymous, into.index, {}, offset};
    }
    size_t start = static_cast<size_t>(offset) / into.entsize * into.entsize;
    size_t end = std::min<size_t>(start + into.entsize, bytes.size());
    std::string text;
    for (size_t i = start; i < end; ++i) text += fmt::format("{:02x}", bytes[i]);
    return {Target::constant, 0, std::move(text), offset - static_cast<int64_t>(start)};
  }

  // For a PC-relative field at r.offset: the distance to the end of its instruction,
  // which the assembler folded into the addend (4 for most, more with an immediate).
  int64_t field_to_instruction_end(const Section& code, const Relocation& r) const {
    const auto& starts = instruction_starts(code);
    auto next = std::upper_bound(starts.begin(), starts.end(), r.offset);
    if (next != starts.begin() && next != starts.end()) return static_cast<int64_t>(*next - r.offset);
    // Not decodable: the field is the last thing of its instruction.
    return elf::relocation_width(r.type).value_or(4);
  }

  // Where each instruction starts, plus where the last decodable one ends.
  const std::vector<uint64_t>& instruction_starts(const Section& code) const {
    auto cached = instruction_starts_.find(code.index);
    if (cached != instruction_starts_.end()) return cached->second;
    ZydisDecoder decoder;
    [[maybe_unused]] ZyanStatus status =
        ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    assert(ZYAN_SUCCESS(status));
    std::span<const uint8_t> bytes = file_.section_bytes(code);
    std::vector<uint64_t> starts;
    uint64_t at = 0;
    while (at < bytes.size()) {
      starts.push_back(at);
      ZydisDecodedInstruction instruction;
      if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder, nullptr, bytes.data() + at, bytes.size() - at,
                                                      &instruction))) {
        starts.pop_back();
        break;
      }
      at += instruction.length;
    }
    starts.push_back(at);
    return instruction_starts_.emplace(code.index, std::move(starts)).first->second;
  }

  const ElfFile& file_;
  std::vector<Entity> entities_;
  std::unordered_map<size_t, std::vector<size_t>> by_section_;  // by start offset
  std::unordered_map<size_t, size_t> by_symbol_;
  mutable std::unordered_map<size_t, std::vector<uint64_t>> instruction_starts_;
  mutable std::unordered_map<size_t, std::vector<Instruction>> instructions_;
};

// --- Correlation ---

void link(Entity& a, size_t ia, Entity& b, size_t ib) {
  a.match = ib;
  b.match = ia;
}

std::string users_key(const ObjectView& view, const Entity& e) {
  std::set<std::string> keys;
  for (size_t user : e.users) keys.insert(view.entities()[user].key);
  std::string out;
  for (const std::string& key : keys) out += key + ";";
  return out;
}

std::string names(const ObjectView& view, const std::vector<size_t>& list) {
  std::string out;
  for (size_t i : list) out += (out.empty() ? "" : ", ") + view.entities()[i].name;
  return out;
}

std::string ambiguous(const ObjectView& patched, const std::vector<size_t>& news, const ObjectView& original,
                      const std::vector<size_t>& olds) {
  return fmt::format("{}: {}: cannot tell which is which of {} in {}: static variables of the same name, "
                     "numbered differently by gcc; rename one of them",
                     patched.file().name(), names(patched, news), names(original, olds), original.file().name());
}

void correlate(ObjectView& original, ObjectView& patched, std::vector<std::string>& errors) {
  std::map<std::string, std::vector<size_t>> old_groups, new_groups;
  for (size_t i = 0; i < original.entities().size(); ++i) old_groups[original.entities()[i].key].push_back(i);
  for (size_t i = 0; i < patched.entities().size(); ++i) new_groups[patched.entities()[i].key].push_back(i);
  auto& olds = original.entities();
  auto& news = patched.entities();

  for (auto& [key, old_list] : old_groups) {
    auto found = new_groups.find(key);
    if (found == new_groups.end()) continue;
    std::vector<size_t>& new_list = found->second;
    if (old_list.size() == 1 && new_list.size() == 1) {
      link(olds[old_list[0]], old_list[0], news[new_list[0]], new_list[0]);
      continue;
    }
    // Same stripped name more than once: tell them apart by who uses them. Where
    // that leaves several with the same users, trust gcc's numbers only if they are
    // the very same names on both sides; shifted numbers could pair the wrong two.
    std::map<std::string, std::pair<std::vector<size_t>, std::vector<size_t>>> by_users;
    for (size_t i : old_list) by_users[users_key(original, olds[i])].first.push_back(i);
    for (size_t i : new_list) by_users[users_key(patched, news[i])].second.push_back(i);
    for (auto& [users, pair] : by_users) {
      auto& [old_same, new_same] = pair;
      if (old_same.size() == 1 && new_same.size() == 1) {
        link(olds[old_same[0]], old_same[0], news[new_same[0]], new_same[0]);
        continue;
      }
      std::set<std::string> old_names, new_names;
      for (size_t i : old_same) old_names.insert(olds[i].name);
      for (size_t i : new_same) new_names.insert(news[i].name);
      if (old_names != new_names || old_names.size() != old_same.size()) continue;
      for (size_t i : old_same) {
        for (size_t j : new_same) {
          if (news[j].name == olds[i].name) link(olds[i], i, news[j], j);
        }
      }
    }
    // One left on each side: paired by elimination (its users changed).
    auto unmatched = [](const std::vector<Entity>& entities, const std::vector<size_t>& list) {
      std::vector<size_t> left;
      for (size_t i : list) {
        if (!entities[i].match) left.push_back(i);
      }
      return left;
    };
    std::vector<size_t> old_left = unmatched(olds, old_list), new_left = unmatched(news, new_list);
    if (old_left.size() == 1 && new_left.size() == 1) {
      link(olds[old_left[0]], old_left[0], news[new_left[0]], new_left[0]);
      continue;
    }
    if (old_left.empty() || new_left.empty() || news[new_left[0]].function) continue;
    // Data that would otherwise pass for new while its running copy holds state.
    // Name the statics that share users when there are such, else all of them.
    bool named = false;
    for (auto& [users, pair] : by_users) {
      std::vector<size_t> old_same = unmatched(olds, pair.first), new_same = unmatched(news, pair.second);
      if (old_same.empty() || new_same.empty()) continue;
      errors.push_back(ambiguous(patched, new_same, original, old_same));
      named = true;
    }
    if (!named) errors.push_back(ambiguous(patched, new_left, original, old_left));
  }
}

// --- Line numbers (step 6 of the opening essay) ---

// Where a call's arguments are, in order (System V x86-64).
constexpr std::array<ZydisRegister, 6> argument_registers = {ZYDIS_REGISTER_RDI, ZYDIS_REGISTER_RSI,
                                                             ZYDIS_REGISTER_RDX, ZYDIS_REGISTER_RCX,
                                                             ZYDIS_REGISTER_R8,  ZYDIS_REGISTER_R9};

ZydisRegister widest(ZydisRegister r) { return ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r); }

// 1 for rdi ... 6 for r9, 0 for any other register.
int argument_slot(ZydisRegister r) {
  for (size_t i = 0; i < argument_registers.size(); ++i) {
    if (argument_registers[i] == widest(r)) return static_cast<int>(i) + 1;
  }
  return 0;
}

// Whether the instruction reads or writes `r` (any part of it, explicitly or not,
// as an operand or in an address).
bool touches(const Instruction& i, ZydisRegister r, bool* reads = nullptr, bool* writes = nullptr) {
  bool read = false, written = false;
  for (size_t k = 0; k < i.insn.operand_count; ++k) {
    const ZydisDecodedOperand& o = i.operands[k];
    if (o.type == ZYDIS_OPERAND_TYPE_REGISTER && widest(o.reg.value) == r) {
      read |= (o.actions & ZYDIS_OPERAND_ACTION_MASK_READ) != 0;
      written |= (o.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
    }
    if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && (widest(o.mem.base) == r || widest(o.mem.index) == r)) read = true;
  }
  if (reads) *reads = read;
  if (writes) *writes = written;
  return read || written;
}

bool transfers_control(const Instruction& i) {
  switch (i.insn.meta.category) {
    case ZYDIS_CATEGORY_CALL:
    case ZYDIS_CATEGORY_COND_BR:
    case ZYDIS_CATEGORY_UNCOND_BR:
    case ZYDIS_CATEGORY_RET:
    case ZYDIS_CATEGORY_INTERRUPT:
    case ZYDIS_CATEGORY_SYSCALL:
    case ZYDIS_CATEGORY_SYSTEM:
      return true;
    default:
      return i.insn.mnemonic == ZYDIS_MNEMONIC_UD0 || i.insn.mnemonic == ZYDIS_MNEMONIC_UD1 ||
             i.insn.mnemonic == ZYDIS_MNEMONIC_UD2 || i.insn.mnemonic == ZYDIS_MNEMONIC_HLT;
  }
}

// `mov $imm, %reg`: the register (widest form) and the value.
std::optional<std::pair<ZydisRegister, uint64_t>> immediate_load(const Instruction& i) {
  if (i.insn.mnemonic != ZYDIS_MNEMONIC_MOV || i.insn.operand_count_visible != 2) return std::nullopt;
  const ZydisDecodedOperand& to = i.operands[0];
  const ZydisDecodedOperand& from = i.operands[1];
  if (to.type != ZYDIS_OPERAND_TYPE_REGISTER || from.type != ZYDIS_OPERAND_TYPE_IMMEDIATE) return std::nullopt;
  return std::pair{widest(to.reg.value), from.imm.value.u};
}

// What `__FILE__` can expand to in this unit: a path to its own source file
// (`unit`, the object's STT_FILE name) or to a header. A string that names
// another source file ("main.c" given to a build tool) is no evidence of a line.
bool file_of_unit(std::string_view text, std::string_view unit) {
  static constexpr std::array<std::string_view, 9> headers = {".h",  ".hh",  ".hpp", ".hxx", ".h++",
                                                              ".H",  ".inc", ".ipp", ".tcc"};
  if (text.empty() || text.find('\n') != std::string_view::npos) return false;
  std::string_view base = text.substr(text.find_last_of('/') == std::string_view::npos ? 0 : text.find_last_of('/') + 1);
  if (!unit.empty() && base == unit) return true;
  return std::any_of(headers.begin(), headers.end(),
                     [&](std::string_view ext) { return base.size() > ext.size() && base.ends_with(ext); });
}

// C libraries' assertion functions, whose third argument is the line.
bool assert_function(std::string_view name) {
  return name == "__assert_fail" || name == "__assert_perror_fail" || name == "__assert";
}

// "FILE.c:41: oops" vs "FILE.c:42: oops": the numbers that differ, if every
// difference is a number right after a source file name and a colon.
std::optional<std::string> line_only_string(std::string_view a, std::string_view b, std::string_view unit) {
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  auto split = [&](std::string_view text) {
    std::vector<std::string_view> runs;
    for (size_t at = 0; at < text.size();) {
      size_t end = at;
      bool number = digit(text[at]);
      while (end < text.size() && digit(text[end]) == number) ++end;
      runs.push_back(text.substr(at, end - at));
      at = end;
    }
    return runs;
  };
  std::vector<std::string_view> x = split(a), y = split(b);
  if (x.size() != y.size() || a == b) return std::nullopt;
  std::string changed;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] == y[i]) continue;
    if (!digit(x[i][0]) || !digit(y[i][0]) || i == 0) return std::nullopt;
    std::string_view before = x[i - 1];
    if (!before.ends_with(':')) return std::nullopt;
    before.remove_suffix(1);
    size_t start = before.find_last_of(" \t\"'(<[");
    if (!file_of_unit(start == std::string_view::npos ? before : before.substr(start + 1), unit)) return std::nullopt;
    changed += fmt::format("{}{} -> {}", changed.empty() ? "" : ", ", x[i], y[i]);
  }
  return changed;
}

// --- Comparison ---

// How a paired entity compares: why it differs (nullopt: it does not), and the
// line numbers that differ without counting as a change.
struct Verdict {
  std::optional<std::string> reason;
  std::vector<std::string> lines;
};

class Differ {
 public:
  Differ(const ObjectView& original, const ObjectView& patched) : original_(original), patched_(patched) {}

  Verdict compare(const Entity& a, const Entity& b) const {
    if (a.function) return compare_contents(a, b);
    if (a.end - a.begin != b.end - b.begin) {
      return {fmt::format("size changed from {} to {} bytes (its type's layout changed?)", a.end - a.begin,
                          b.end - b.begin),
              {}};
    }
    Verdict verdict = compare_contents(a, b);
    if (verdict.reason) verdict.reason = fmt::format("initial value changed ({})", *verdict.reason);
    return verdict;
  }

 private:
  size_t index_of(const ObjectView& view, const Entity& e) const {
    return static_cast<size_t>(&e - view.entities().data());
  }

  // Walks two functions' code instruction by instruction: the first difference
  // that is not a line number, as a reason; line numbers go to `lines`.
  std::optional<std::string> compare_code(const Entity& a, const Entity& b, size_t first_difference,
                                          std::vector<std::string>& lines) const {
    const auto& old_code = original_.instructions(index_of(original_, a));
    const auto& new_code = patched_.instructions(index_of(patched_, b));
    std::vector<uint8_t> old_bytes = original_.masked_bytes(a);
    std::vector<uint8_t> new_bytes = patched_.masked_bytes(b);
    auto plain = [&] { return fmt::format("bytes differ at +{:#x}", first_difference); };
    for (size_t k = 0; k < old_code.size() && k < new_code.size(); ++k) {
      const Instruction& o = old_code[k];
      const Instruction& n = new_code[k];
      if (o.offset != n.offset || o.insn.length != n.insn.length) return plain();
      auto old_span = std::span(old_bytes).subspan(o.offset, o.insn.length);
      auto new_span = std::span(new_bytes).subspan(n.offset, n.insn.length);
      if (std::equal(old_span.begin(), old_span.end(), new_span.begin())) continue;
      auto old_load = immediate_load(o), new_load = immediate_load(n);
      std::string where = fmt::format("bytes differ at +{:#x}", o.offset);
      if (!old_load || !new_load || old_load->first != new_load->first) return where;
      // Only the immediate's bytes may differ.
      const auto& imm = n.insn.raw.imm[0];
      for (size_t i = 0; i < old_span.size(); ++i) {
        if (old_span[i] != new_span[i] && (i < imm.offset || i >= imm.offset + imm.size)) return where;
      }
      auto old_use = line_argument(original_, false, a, k);
      auto new_use = line_argument(patched_, true, b, k);
      if (!old_use || !new_use || *old_use != *new_use) return where;
      lines.push_back(
          fmt::format("+{:#x}: line {} -> {} ({})", o.offset, old_load->second, new_load->second, *new_use));
    }
    // Both sides decoded to their ends with every difference forgiven, or one
    // did not decode: then the plain difference stands.
    if (old_code.empty() || new_code.empty() || old_code.size() != new_code.size()) return plain();
    const Instruction& last = old_code.back();
    if (last.offset + last.insn.length != old_bytes.size()) return plain();
    return std::nullopt;
  }

  // If instruction `at` of `e` loads an immediate into an argument register that
  // only a call's line argument uses: "argument 3 of __assert_fail".
  std::optional<std::string> line_argument(const ObjectView& view, bool patched_side, const Entity& e,
                                           size_t at) const {
    const auto& code = view.instructions(index_of(view, e));
    auto load = immediate_load(code[at]);
    if (!load) return std::nullopt;
    ZydisRegister reg = load->first;
    int slot = argument_slot(reg);
    if (slot == 0) return std::nullopt;
    const Section& where = view.section(e.section);
    for (size_t k = at + 1; k < code.size(); ++k) {
      const Instruction& i = code[k];
      bool call = i.insn.meta.category == ZYDIS_CATEGORY_CALL;
      bool tail_call = i.insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR;
      if (!call && !tail_call) {
        if (transfers_control(i) || touches(i, reg)) return std::nullopt;
        continue;
      }
      std::optional<Relocation> r = view.relocation_in(e, i);
      if (!r) return std::nullopt;  // through a register, or a jump within the function
      Target callee = view.resolve(where, *r);
      if (callee.kind != Target::external && callee.kind != Target::entity) return std::nullopt;
      bool known = callee.kind == Target::external && assert_function(callee.text) && slot == 3;
      if (!known && !line_slots().count(fmt::format("{}#{}", key(view, patched_side, callee, 0), slot)))
        return std::nullopt;
      // A callee of this object may be known (-fipa-ra) to leave the register
      // alone: then the value must be dead after the call too.
      if (call && callee.kind == Target::entity && !dead_after(code, k, reg)) return std::nullopt;
      return fmt::format("argument {} of {}", slot, show(view, patched_side, callee));
    }
    return std::nullopt;
  }

  // Whether `reg` is written before it is read after instruction `call`, in
  // straight-line code; a return ends its life unless it carries the result.
  static bool dead_after(const std::vector<Instruction>& code, size_t call, ZydisRegister reg) {
    for (size_t k = call + 1; k < code.size(); ++k) {
      bool reads = false, writes = false;
      if (touches(code[k], reg, &reads, &writes)) return !reads && writes;
      if (code[k].insn.meta.category == ZYDIS_CATEGORY_RET)
        return reg != ZYDIS_REGISTER_RAX && reg != ZYDIS_REGISTER_RDX;
      if (transfers_control(code[k])) return false;
    }
    return false;
  }

  // "CALLEE#N" for every argument N of a callee that some call in either object
  // passes a source file name in argument N-1 and an immediate in argument N.
  const std::set<std::string>& line_slots() const {
    if (line_slots_) return *line_slots_;
    line_slots_.emplace();
    for (bool patched_side : {false, true}) {
      const ObjectView& view = patched_side ? patched_ : original_;
      for (size_t e = 0; e < view.entities().size(); ++e) {
        const Entity& entity = view.entities()[e];
        if (!entity.function) continue;
        const auto& code = view.instructions(e);
        for (size_t k = 0; k < code.size(); ++k) {
          if (code[k].insn.meta.category != ZYDIS_CATEGORY_CALL) continue;
          std::optional<Relocation> r = view.relocation_in(entity, code[k]);
          if (!r) continue;
          std::string callee = key(view, patched_side, view.resolve(view.section(entity.section), *r), 0);
          for (size_t slot = 1; slot < argument_registers.size(); ++slot) {
            auto file = argument_source(view, entity, code, k, argument_registers[slot - 1]);
            auto line = argument_source(view, entity, code, k, argument_registers[slot]);
            if (file && file->target && file->target->kind == Target::string && file->target->offset == 0 &&
                file_of_unit(file->target->text, view.unit()) && line && !line->target)
              line_slots_->insert(fmt::format("{}#{}", callee, slot + 1));
          }
        }
      }
    }
    return *line_slots_;
  }

  // What an argument register was loaded with: an address (`lea x(%rip)`, what
  // its relocation refers to) or an immediate (no target).
  struct Source {
    std::optional<Target> target;
  };

  // What register `reg` holds at instruction `call`, looking back through
  // straight-line code and register copies.
  static std::optional<Source> argument_source(const ObjectView& view, const Entity& e,
                                               const std::vector<Instruction>& code, size_t call, ZydisRegister reg) {
    constexpr size_t window = 64;
    for (size_t k = call; k-- > 0 && call - k <= window;) {
      const Instruction& i = code[k];
      if (i.insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR || i.insn.meta.category == ZYDIS_CATEGORY_RET ||
          i.insn.meta.category == ZYDIS_CATEGORY_CALL)
        return std::nullopt;
      bool reads = false, writes = false;
      if (!touches(i, reg, &reads, &writes) || !writes) continue;
      if (immediate_load(i)) return Source{};
      const ZydisDecodedOperand& from = i.operands[1];
      if (i.insn.mnemonic == ZYDIS_MNEMONIC_MOV && i.insn.operand_count_visible == 2 &&
          from.type == ZYDIS_OPERAND_TYPE_REGISTER && widest(from.reg.value) != reg) {
        reg = widest(from.reg.value);  // a copy: follow its source
        continue;
      }
      if (i.insn.mnemonic == ZYDIS_MNEMONIC_LEA && from.type == ZYDIS_OPERAND_TYPE_MEMORY &&
          from.mem.base == ZYDIS_REGISTER_RIP) {
        std::optional<Relocation> r = view.relocation_in(e, i);
        if (!r) return std::nullopt;
        return Source{view.resolve(view.section(e.section), *r)};
      }
      return std::nullopt;
    }
    return std::nullopt;
  }

  Verdict compare_contents(const Entity& a, const Entity& b) const {
    Verdict verdict;
    std::vector<uint8_t> old_bytes = original_.masked_bytes(a);
    std::vector<uint8_t> new_bytes = patched_.masked_bytes(b);
    std::string size_change;
    if (old_bytes.size() != new_bytes.size()) {
      size_change = fmt::format("size changed from {} to {} bytes", old_bytes.size(), new_bytes.size());
    }
    auto [old_at, new_at] = std::mismatch(old_bytes.begin(), old_bytes.end(), new_bytes.begin(), new_bytes.end());
    if (old_at != old_bytes.end() && new_at != new_bytes.end()) {
      auto first = static_cast<size_t>(old_at - old_bytes.begin());
      if (!size_change.empty()) return {fmt::format("bytes differ at +{:#x}, {}", first, size_change), {}};
      if (!a.function) return {fmt::format("bytes differ at +{:#x}", first), {}};
      verdict.reason = compare_code(a, b, first, verdict.lines);
      if (verdict.reason) return verdict;
    }
    if (!size_change.empty()) return {size_change, {}};

    std::vector<Relocation> old_relocs = original_.relocations_in(a);
    std::vector<Relocation> new_relocs = patched_.relocations_in(b);
    if (old_relocs.size() != new_relocs.size()) {
      return {fmt::format("has {} relocations instead of {}", new_relocs.size(), old_relocs.size()), {}};
    }
    const Section& old_section = original_.section(a.section);
    const Section& new_section = patched_.section(b.section);
    for (size_t i = 0; i < old_relocs.size(); ++i) {
      const Relocation& o = old_relocs[i];
      const Relocation& n = new_relocs[i];
      uint64_t old_offset = o.offset - a.begin, new_offset = n.offset - b.begin;
      if (old_offset != new_offset) {
        return {fmt::format("relocation {} moved from +{:#x} to +{:#x}", i, old_offset, new_offset), {}};
      }
      if (o.type != n.type) {
        return {fmt::format("relocation {} (at +{:#x}) changed from {} to {}", i, new_offset,
                            relocation_type_name(o.type), relocation_type_name(n.type)),
                {}};
      }
      Target old_target = original_.resolve(old_section, o);
      Target new_target = patched_.resolve(new_section, n);
      if (key(original_, false, old_target, 0) == key(patched_, true, new_target, 0)) continue;
      if (old_target.kind == Target::string && new_target.kind == Target::string) {
        if (old_target.offset == new_target.offset) {
          if (auto lines = line_only_string(old_target.text, new_target.text, patched_.unit())) {
            verdict.lines.push_back(fmt::format("+{:#x}: line {} in string {}", new_offset, *lines,
                                                quoted(new_target.text)));
            continue;
          }
        }
        return {fmt::format("string literal changed from {} to {} (relocation {} at +{:#x})", quoted(old_target.text),
                            quoted(new_target.text), i, new_offset),
                {}};
      }
      return {fmt::format("relocation {} (at +{:#x}) now refers to {} instead of {}", i, new_offset,
                          show(patched_, true, new_target), show(original_, false, old_target)),
              {}};
    }
    return verdict;
  }

  // A name for a target that is equal on both sides exactly when the targets are
  // the same thing (correlated entity, same string, same constant, same contents).
  std::string key(const ObjectView& view, bool patched_side, const Target& target, int depth) const {
    switch (target.kind) {
      case Target::entity: {
        const Entity& e = view.entities()[target.index];
        std::string id;
        if (!e.match) id = (patched_side ? "new " : "old ") + e.name;
        else id = patched_side ? original_.entities()[*e.match].name : e.name;
        return fmt::format("entity {}{:+}", id, target.offset);
      }
      case Target::string: return fmt::format("string {}{:+}", target.text, target.offset);
      case Target::constant: return fmt::format("constant {}{:+}", target.text, target.offset);
      case Target::external: return fmt::format("extern {}{:+}", target.text, target.offset);
      case Target::anonymous:
        return fmt::format("anonymous {}{:+}", fingerprint(view, patched_side, target.index, depth + 1),
                           target.offset);
    }
    return {};
  }

  // The contents of a section without symbols (a jump table), modulo relocations,
  // with each relocation's target named by key().
  std::string fingerprint(const ObjectView& view, bool patched_side, size_t index, int depth) const {
    constexpr int max_depth = 4;
    const Section& section = view.section(index);
    if (depth > max_depth) return section.name;
    Entity whole;
    whole.section = index;
    whole.end = section.size;
    std::string out;
    for (uint8_t byte : view.masked_bytes(whole)) out += fmt::format("{:02x}", byte);
    for (const Relocation& r : view.relocations_in(whole)) {
      out += fmt::format("|{:#x} {} {}", r.offset, r.type, key(view, patched_side, view.resolve(section, r), depth));
    }
    return out;
  }

  static std::string show(const ObjectView& view, bool patched_side, const Target& target) {
    auto plus = [](int64_t offset) { return offset == 0 ? std::string() : fmt::format("{:+#x}", offset); };
    switch (target.kind) {
      case Target::entity: {
        const Entity& e = view.entities()[target.index];
        return e.name + plus(target.offset) + (e.match ? "" : patched_side ? " (new)" : " (gone)");
      }
      case Target::string: return "string " + quoted(target.text) + plus(target.offset);
      case Target::constant: return "constant 0x" + target.text + plus(target.offset);
      case Target::external: return target.text + plus(target.offset);
      case Target::anonymous: return view.section(target.index).name + plus(target.offset);
    }
    return {};
  }

  const ObjectView& original_;
  const ObjectView& patched_;
  mutable std::optional<std::set<std::string>> line_slots_;
};

// Writable, read-only or thread-local: a variable cannot move between these.
std::string storage(const ObjectView& view, const Entity& e) {
  const Section& section = view.section(e.section);
  if (section.flags & SHF_TLS) return "thread-local";
  return (section.flags & SHF_WRITE) ? "writable" : "read-only";
}

std::string users_of(const ObjectView& view, const Entity& e) {
  std::vector<size_t> users(e.users.begin(), e.users.end());
  return users.empty() ? std::string() : " (used by " + names(view, users) + ")";
}

}  // namespace

const char* kind_name(Change::Kind kind) {
  switch (kind) {
    case Change::changed_function: return "changed function";
    case Change::new_function: return "new function";
    case Change::new_data: return "new data";
    case Change::changed_data: return "changed data";
    case Change::removed_function: return "removed function";
  }
  return "?";
}

ObjectDiff diff_objects(const elf::ElfFile& original, const elf::ElfFile& patched) {
  ObjectDiff diff;
  ObjectView old_view(original);
  ObjectView new_view(patched);
  // Pair entities first: every comparison names targets by their pairing.
  correlate(old_view, new_view, diff.errors);
  const auto& olds = old_view.entities();
  const auto& news = new_view.entities();

  for (const Entity& e : news) {
    if (e.match) diff.original_name.emplace(e.name, olds[*e.match].name);
  }
  // Who refers to whom; a reference to a cold part is its parent's own jump.
  auto call_graph = [](const std::vector<Entity>& entities, std::map<std::string, std::set<std::string>>& graph) {
    for (const Entity& e : entities) {
      if (!e.function || e.parent) continue;
      graph[e.name];
      for (size_t user : e.users)
        if (entities[user].function) graph[entities[user].name].insert(e.name);
    }
  };
  call_graph(olds, diff.references);
  call_graph(news, diff.patched_references);

  // Compare every pair; a fragment's difference is its parent's.
  Differ differ(old_view, new_view);
  std::vector<std::optional<std::string>> reasons(news.size());
  std::vector<std::vector<std::string>> lines(news.size());
  for (size_t i = 0; i < news.size(); ++i) {
    if (!news[i].match) continue;
    Verdict verdict = differ.compare(olds[*news[i].match], news[i]);
    reasons[i] = std::move(verdict.reason);
    lines[i] = std::move(verdict.lines);
  }
  for (size_t i = 0; i < news.size(); ++i) {
    if (news[i].match && !news[i].function) {
      std::string now = storage(new_view, news[i]), before = storage(old_view, olds[*news[i].match]);
      if (now != before) reasons[i] = fmt::format("was {}, is now {}", before, now);
    }
  }
  for (size_t i = 0; i < news.size(); ++i) {
    const Entity& e = news[i];
    if (!e.parent) continue;
    std::optional<std::string> why;
    if (!e.match) why = fmt::format("new cold part {}", e.name);
    else if (reasons[i]) why = fmt::format("cold part {} changed: {}", e.name, *reasons[i]);
    if (why && news[*e.parent].match && !reasons[*e.parent]) reasons[*e.parent] = why;
    for (const std::string& line : lines[i]) lines[*e.parent].push_back(fmt::format("{} {}", e.name, line));
  }
  for (const Entity& e : olds) {
    if (!e.parent || e.match || !olds[*e.parent].match) continue;
    size_t parent = *olds[*e.parent].match;
    if (!reasons[parent]) reasons[parent] = fmt::format("cold part {} is gone", e.name);
  }

  // Report in the patched object's symbol order, removed functions last.
  for (size_t i = 0; i < news.size(); ++i) {
    const Entity& e = news[i];
    if (e.parent) continue;
    const std::string& section = new_view.section(e.section).name;
    std::string old_name = e.match ? olds[*e.match].name : std::string();
    if (e.match && !reasons[i] && !lines[i].empty()) {
      std::string all;
      for (const std::string& line : lines[i]) all += (all.empty() ? "" : "; ") + line;
      diff.forgiven.push_back({e.function ? Change::changed_function : Change::changed_data, e.name, section,
                               "only line numbers changed: " + all, old_name});
    }
    if (e.function) {
      if (!e.match) {
        diff.changes.push_back({Change::new_function, e.name, section, "new function", {}});
      } else if (reasons[i]) {
        diff.changes.push_back({Change::changed_function, e.name, section, *reasons[i], old_name});
      }
      continue;
    }
    if (!e.match) {
      bool zero = new_view.section(e.section).type == SHT_NOBITS;
      diff.changes.push_back({Change::new_data, e.name, section,
                              fmt::format("new {} variable{}", storage(new_view, e),
                                          zero ? ", zero-initialised" : ", initialised"),
                              {}});
    } else if (reasons[i]) {
      diff.changes.push_back({Change::changed_data, e.name, section, *reasons[i], old_name});
      diff.errors.push_back(fmt::format("{}: {}: {}: {}{}; existing data cannot change in a live patch",
                                        patched.name(), section, e.name, *reasons[i], users_of(new_view, e)));
    }
  }

  // A changed function that refers to another changed function: say so, since the
  // caller's change may come from what gcc concluded about (or partly inlined from)
  // the callee rather than from its own source.
  for (Change& change : diff.changes) {
    if (change.kind != Change::changed_function) continue;
    std::set<std::string> callees;
    for (size_t i = 0; i < news.size(); ++i) {
      if (news[i].function && reasons[i] && !news[i].parent && news[i].name != change.symbol) {
        for (size_t user : news[i].users) {
          if (news[user].name == change.symbol) callees.insert(news[i].name);
        }
      }
    }
    for (const std::string& callee : callees) {
      change.reason += fmt::format("; calls changed function {}", callee);
    }
  }

  for (const Entity& e : olds) {
    if (e.function && !e.match && !e.parent) {
      diff.changes.push_back({Change::removed_function, e.name, old_view.section(e.section).name,
                              "no longer in the patched object", e.name});
    }
  }
  return diff;
}

}  // namespace suture::build::diff
