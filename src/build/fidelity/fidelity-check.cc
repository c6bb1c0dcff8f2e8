// Is the function the rebuild compiled the same code as the one in the binary?
//
// Problem. `suture build` rebuilds the original sources and patches the running
// program with functions of the patched rebuild. That is only sound if the
// original rebuild is what the running program was built from: same sources,
// compiler and flags. We check it function by function, for every function a
// patch replaces, before writing the patch.
//
// Approach. The rebuild's function is a relocatable section (-ffunction-sections)
// whose relocated fields are still zero; the binary's copy has them filled in by
// the linker. So the two must have the same size, the same bytes outside
// relocated fields, and each relocated field of the binary must resolve to what
// the relocation names. We recover, for every field, the value the linker wrote
// (`V = S + A` for the psABI's PC-relative and absolute kinds, read back as
// `P + disp` or the field itself), take `X = V - A` as the address the linker
// used for the relocation's symbol, and ask the binary whether that is right:
//  - a named symbol (function, variable, static of one file): X is its address
//    in the binary's symbol table (statics are matched by name and source file);
//    for a call to a preemptible or undefined function, X may instead be its PLT
//    entry, which we decode (`jmp *slot(%rip)`) and whose GOT slot's dynamic
//    relocation must name the function;
//  - a GOT reference (GOTPCREL*): X is a GOT slot whose dynamic relocation names
//    the symbol, or holds its address; or the linker relaxed the instruction
//    (x86-64 psABI B.2: mov→lea, call *→addr32 call, jmp *→jmp; nop), and then
//    the field is a direct reference to the symbol;
//  - an anonymous place (section symbol or .L label): in a merged section
//    (strings, .rodata.cstN) the linker moved and deduplicated the entity, so we
//    compare the entity itself (the NUL-terminated string or the N-byte constant)
//    at the address the binary uses; in an ordinary section, which the linker
//    keeps whole, the section's address follows from any named symbol in it, and
//    if it has none (jump tables, anonymous constants) we compare the section's
//    bytes at X the same way, relocations included.
//
// Padding. The assembler picks the nops that align code itself, so the same
// compiler output can differ in padding alone (`nopl 0x0(%rax)` against
// `nopw 0x0(%rax,%rax,1)`, an extra `xchg %ax,%ax`), which shifts every later
// offset and displacement. When the bytes differ we therefore compare the two
// again instruction by instruction with the padding left out (see Decoded):
// the same instructions one to one, branches inside the function going to the
// same instruction, references into the function (jump tables) naming the
// same instruction, and relocated instructions checked as above.
//
// Branch sizes. The rebuild puts each function in its own section, the user's
// build all of a file's functions in one .text. A branch to another function of
// the file (a tail call to a static, a conditional jump to one in hand-written
// code) is then a near `jmp`/`jcc rel32` with a relocation in the rebuild, as
// the assembler cannot know the distance between sections, but may be a short
// `rel8` one in the binary, the assembler having relaxed it; and a branch
// inside the function that spans it may turn short in turn. The instruction
// comparison takes a branch of another displacement size for the same one when
// it is the same jump or condition with the same prefixes and goes to the same
// place: for a relocated one, where the relocation says (the binary's target,
// less the distance from the field to the instruction's end, is read as the
// linker's S + A and checked as above); for one inside the function, the same
// instruction. A call has no short form, so it never changes size.
//
// Rejected. Comparing instructions symbolically from the start would need a
// model of every relaxation and of what each operand means; the relocation
// table already says which bytes the linker may change and how, so the
// instruction-level comparison is only a fallback, and reuses it.
// Comparing against a relink of the rebuild would prove nothing about the binary
// on disk. Matching functions by address order would break on any layout change.
//
// Anything we cannot verify is a mismatch that says so: a wrong "same" would let
// code built from other sources into a running program.

#include "build/fidelity/fidelity-check.h"

#include <Zydis/Zydis.h>
#include <elf.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <set>
#include <span>
#include <string_view>
#include <unordered_map>

namespace suture::build::fidelity {
namespace {

using elf::ElfFile;
using elf::Relocation;
using elf::Section;
using elf::Symbol;

std::string relocation_name(uint32_t type) {
  switch (type) {
    case R_X86_64_64:
      return "R_X86_64_64";
    case R_X86_64_PC32:
      return "R_X86_64_PC32";
    case R_X86_64_GOT32:
      return "R_X86_64_GOT32";
    case R_X86_64_PLT32:
      return "R_X86_64_PLT32";
    case R_X86_64_GOTPCREL:
      return "R_X86_64_GOTPCREL";
    case R_X86_64_32:
      return "R_X86_64_32";
    case R_X86_64_32S:
      return "R_X86_64_32S";
    case R_X86_64_TLSGD:
      return "R_X86_64_TLSGD";
    case R_X86_64_TLSLD:
      return "R_X86_64_TLSLD";
    case R_X86_64_DTPOFF32:
      return "R_X86_64_DTPOFF32";
    case R_X86_64_GOTTPOFF:
      return "R_X86_64_GOTTPOFF";
    case R_X86_64_TPOFF32:
      return "R_X86_64_TPOFF32";
    case R_X86_64_PC64:
      return "R_X86_64_PC64";
    case R_X86_64_GOTOFF64:
      return "R_X86_64_GOTOFF64";
    case R_X86_64_GOTPC32:
      return "R_X86_64_GOTPC32";
    case R_X86_64_GOTPC32_TLSDESC:
      return "R_X86_64_GOTPC32_TLSDESC";
    case R_X86_64_TLSDESC_CALL:
      return "R_X86_64_TLSDESC_CALL";
    case R_X86_64_GOTPCRELX:
      return "R_X86_64_GOTPCRELX";
    case R_X86_64_REX_GOTPCRELX:
      return "R_X86_64_REX_GOTPCRELX";
    default:
      return fmt::format("relocation type {}", type);
  }
}

uint64_t read_le(std::span<const uint8_t> bytes, size_t at, unsigned width) {
  uint64_t value = 0;
  for (unsigned i = 0; i < width; ++i) value |= uint64_t{bytes[at + i]} << (8 * i);
  return value;
}

int64_t sign_extend(uint64_t value, unsigned width) {
  if (width >= 8) return static_cast<int64_t>(value);
  unsigned shift = 64 - 8 * width;
  return static_cast<int64_t>(value << shift) >> shift;
}

// Compiler-made local labels (.LC0, .L5): they name a place, not an entity the
// binary's symbol table keeps.
bool is_label(const Symbol& symbol) { return symbol.name.starts_with(".L"); }

bool in_a_section(const ElfFile& file, const Symbol& symbol) {
  return symbol.shndx != SHN_UNDEF && symbol.shndx < SHN_LORESERVE && symbol.shndx < file.sections().size();
}

std::string quoted(std::span<const uint8_t> bytes) {
  std::string out = "\"";
  size_t shown = std::min<size_t>(bytes.size(), 40);
  for (size_t i = 0; i < shown; ++i) {
    uint8_t c = bytes[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == 0 && i + 1 == bytes.size()) {
      // The terminator: implied by the quotes.
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (shown < bytes.size()) out += "...";
  return out + "\"";
}

std::string hex_bytes(std::span<const uint8_t> bytes) {
  std::string out;
  for (uint8_t b : bytes) out += fmt::format("{}{:02x}", out.empty() ? "" : " ", b);
  return out;
}

struct DynamicRelocation {
  uint32_t type = 0;
  std::string symbol;  // empty for RELATIVE and other symbol-less kinds
  int64_t addend = 0;
};

// What the binary says about its own symbols, GOT and PLT, indexed once.
class BinaryIndex {
 public:
  struct Found {
    const Symbol* symbol = nullptr;
    std::string problem;  // why `symbol` is null
  };

  explicit BinaryIndex(const ElfFile& binary) : binary_(binary) {
    auto add = [&](const Symbol& symbol) {
      if (!symbol.defined() || symbol.name.empty() || symbol.type == STT_SECTION || symbol.type == STT_FILE) return;
      (symbol.bind == STB_LOCAL ? locals_ : globals_)[symbol.name].push_back(&symbol);
      if (symbol.size > 0 && (symbol.type == STT_FUNC || symbol.type == STT_OBJECT || symbol.type == STT_GNU_IFUNC))
        sized_.push_back(&symbol);
    };
    // .symtab first, so that its entries are preferred; .dynsym adds what a
    // stripped binary still exports.
    for (const Symbol& symbol : binary.symbols()) add(symbol);
    for (const Symbol& symbol : binary.dynamic_symbols()) add(symbol);
    read_dynamic_relocations();
  }

  // The binary's definition of a symbol of the rebuild.
  Found find(const Symbol& wanted) const {
    if (wanted.bind == STB_LOCAL) return find_local(wanted);
    if (auto it = globals_.find(wanted.name); it != globals_.end()) {
      for (const Symbol* symbol : it->second)
        if (symbol->default_version) return {symbol, {}};
      return {it->second.front(), {}};
    }
    // Hidden and internal globals become locals of the linked binary.
    if (auto it = locals_.find(wanted.name); it != locals_.end() && it->second.size() == 1)
      return {it->second.front(), {}};
    return {nullptr, "not found in the binary"};
  }

  const DynamicRelocation* dynamic_relocation_at(uint64_t address) const {
    auto it = dynamic_.find(address);
    return it == dynamic_.end() ? nullptr : &it->second;
  }

  // The GOT slot a PLT entry (.plt, .plt.sec or .plt.got) at `address` jumps
  // through, if there is one: `[endbr64] [bnd] jmp *disp32(%rip)`.
  std::optional<uint64_t> plt_slot(uint64_t address) const {
    const Section* plt = section_at(address);
    if (!plt || (plt->name != ".plt" && plt->name != ".plt.sec" && plt->name != ".plt.got")) return std::nullopt;
    auto code = binary_.bytes_at_vaddr(address, std::min<uint64_t>(16, plt->addr + plt->size - address));
    size_t at = 0;
    if (code.size() >= 4 && code[0] == 0xf3 && code[1] == 0x0f && code[2] == 0x1e && code[3] == 0xfa) at = 4;
    if (at < code.size() && code[at] == 0xf2) ++at;
    if (at + 6 > code.size() || code[at] != 0xff || code[at + 1] != 0x25) return std::nullopt;
    return address + at + 6 + sign_extend(read_le(code, at + 2, 4), 4);
  }

  // The symbol whose PLT entry is at `address`, if it is one.
  std::optional<std::string> plt_symbol(uint64_t address) const {
    auto slot = plt_slot(address);
    if (!slot) return std::nullopt;
    const DynamicRelocation* relocation = dynamic_relocation_at(*slot);
    if (!relocation || relocation->symbol.empty()) return std::nullopt;
    return relocation->symbol;
  }

  // "bar", "bar+0x8", "puts@plt", ".rodata+0x10": what lies at an address.
  std::string describe(uint64_t address) const {
    for (const Symbol* symbol : sized_)
      if (address >= symbol->value && address - symbol->value < symbol->size)
        return address == symbol->value ? symbol->name
                                        : fmt::format("{}+0x{:x}", symbol->name, address - symbol->value);
    if (auto name = plt_symbol(address)) return *name + "@plt";
    if (const Section* section = section_at(address))
      return fmt::format("{}+0x{:x}", section->name, address - section->addr);
    return "outside the binary's sections";
  }

 private:
  Found find_local(const Symbol& wanted) const {
    auto it = locals_.find(wanted.name);
    if (it == locals_.end()) return {nullptr, "not found in the binary"};
    const auto& all = it->second;
    std::vector<const Symbol*> same_file;
    for (const Symbol* symbol : all)
      if (!wanted.file.empty() && symbol->file == wanted.file) same_file.push_back(symbol);
    if (same_file.size() == 1) return {same_file.front(), {}};
    if (same_file.empty() && all.size() == 1 && (wanted.file.empty() || all.front()->file.empty()))
      return {all.front(), {}};
    std::string files;
    for (const Symbol* symbol : all)
      files += fmt::format("{}{}", files.empty() ? "" : ", ", symbol->file.empty() ? "?" : symbol->file);
    if (same_file.empty() && !wanted.file.empty() && all.size() >= 1)
      return {nullptr, fmt::format("not found in the binary as a static of {} (statics of that name come from: {})",
                                   wanted.file, files)};
    return {nullptr, fmt::format("ambiguous in the binary: {} statics of that name (from: {})", all.size(), files)};
  }

  const Section* section_at(uint64_t address) const {
    for (const Section& section : binary_.sections())
      if ((section.flags & SHF_ALLOC) && address >= section.addr && address - section.addr < section.size)
        return &section;
    return nullptr;
  }

  // .rela.dyn and .rela.plt: the tables whose symbols are .dynsym's.
  void read_dynamic_relocations() {
    const auto& sections = binary_.sections();
    const auto& dynsym = binary_.dynamic_symbols();
    for (const Section& section : sections) {
      if (section.type != SHT_RELA || section.link >= sections.size() || sections[section.link].type != SHT_DYNSYM)
        continue;
      auto bytes = binary_.section_bytes(section);
      for (size_t at = 0; at + sizeof(Elf64_Rela) <= bytes.size(); at += sizeof(Elf64_Rela)) {
        Elf64_Rela rela;
        std::memcpy(&rela, bytes.data() + at, sizeof rela);
        DynamicRelocation relocation{static_cast<uint32_t>(ELF64_R_TYPE(rela.r_info)), {}, rela.r_addend};
        if (size_t index = ELF64_R_SYM(rela.r_info); index != 0 && index < dynsym.size())
          relocation.symbol = dynsym[index].name;
        dynamic_.emplace(rela.r_offset, std::move(relocation));
      }
    }
  }

  const ElfFile& binary_;
  std::unordered_map<std::string, std::vector<const Symbol*>> globals_;
  std::unordered_map<std::string, std::vector<const Symbol*>> locals_;
  std::vector<const Symbol*> sized_;
  std::map<uint64_t, DynamicRelocation> dynamic_;
};

// The kinds check_site() verifies; every other is reported as not verified.
bool verified(uint32_t type) {
  switch (type) {
    case R_X86_64_PC32:
    case R_X86_64_PLT32:
    case R_X86_64_PC64:
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_64:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
    case R_X86_64_TPOFF32:
      return true;
    default:
      return false;
  }
}

// How the linker treated a GOTPCRELX site (psABI B.2), seen from the bytes.
enum class GotForm { Kept, Lea, Call, Jump, Unknown };

// One relocated stretch of a block: the field and, for a relaxed GOTPCRELX
// site, the opcode bytes the linker was allowed to rewrite.
struct Site {
  uint64_t begin = 0;  // block-relative
  uint64_t end = 0;
  uint64_t field = 0;  // where the relocated field is in the rebuild
  const Relocation* relocation = nullptr;
  GotForm form = GotForm::Kept;
};

struct Difference {
  uint64_t offset = 0;
  std::string what;
};


// --- Instruction-level fallback ---------------------------------------------
//
// The assembler chooses alignment padding itself (gas picks among nop forms by
// how many bytes a `.p2align` needs, and that depends on the layout before it),
// so the same compiler output can assemble into bytes that differ only in
// padding, which then shifts every later offset and branch displacement. When
// the byte comparison fails we decode both copies linearly and compare them
// with the padding left out. Padding is an instruction Zydis decodes as NOP,
// which covers every form gas emits for x86-64 code alignment:
//   90                               nop
//   66 90                            xchg %ax,%ax (data16 nop)
//   0f 1f 00 / 0f 1f 40 00           nopl (%rax) / nopl 0x0(%rax)
//   0f 1f 44 00 00                   nopl 0x0(%rax,%rax,1)
//   66 0f 1f 44 00 00                nopw 0x0(%rax,%rax,1)
//   0f 1f 80 00 00 00 00             nopl 0x0(%rax)
//   0f 1f 84 00 00 00 00 00          nopl 0x0(%rax,%rax,1)
//   66 0f 1f 84 00 ...               nopw 0x0(%rax,%rax,1)
//   [66 ...] 66 2e 0f 1f 84 00 ...   data16 ... cs nopw 0x0(%rax,%rax,1)
// (66 90 is checked by its bytes too, should a decoder call it xchg.) The
// 32-bit fillers `lea 0x0(%esi,%eiz,1),%esi` and `mov %esi,%esi` are not
// padding here: gas does not emit them in 64-bit code, and they are not
// no-ops there (they write a register), so they are compared like any other
// instruction. What remains must pair up one to one.

constexpr size_t kNoIndex = SIZE_MAX;

struct Decoded {
  struct Instruction {
    uint64_t offset = 0;
    ZydisDecodedInstruction insn;
    std::array<ZydisDecodedOperand, ZYDIS_MAX_OPERAND_COUNT> operands;
  };
  std::vector<Instruction> kept;  // padding left out
  // For every offset 0..size: the index in `kept` of the instruction there, or
  // of the first one after padding there (kept.size() at the end); kNoIndex
  // inside an instruction.
  std::vector<size_t> index_at;
  std::optional<uint64_t> undecodable_at;

  uint64_t offset_of(size_t index, uint64_t size) const { return index < kept.size() ? kept[index].offset : size; }
};

bool is_padding(const ZydisDecodedInstruction& insn, std::span<const uint8_t> bytes) {
  if (insn.mnemonic == ZYDIS_MNEMONIC_NOP) return true;
  return insn.length == 2 && bytes[0] == 0x66 && bytes[1] == 0x90;
}

Decoded decode_function(std::span<const uint8_t> code) {
  ZydisDecoder decoder;
  ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  Decoded decoded;
  decoded.index_at.assign(code.size() + 1, kNoIndex);
  std::vector<uint64_t> padding;  // offsets of padding not yet followed by a kept instruction
  uint64_t at = 0;
  while (at < code.size()) {
    Decoded::Instruction instruction;
    instruction.offset = at;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, code.data() + at, code.size() - at, &instruction.insn,
                                             instruction.operands.data()))) {
      decoded.undecodable_at = at;
      return decoded;
    }
    if (is_padding(instruction.insn, code.subspan(at))) {
      padding.push_back(at);
    } else {
      for (uint64_t p : padding) decoded.index_at[p] = decoded.kept.size();
      padding.clear();
      decoded.index_at[at] = decoded.kept.size();
      decoded.kept.push_back(instruction);
    }
    at += instruction.insn.length;
  }
  for (uint64_t p : padding) decoded.index_at[p] = decoded.kept.size();
  decoded.index_at[code.size()] = decoded.kept.size();
  return decoded;
}

// Where an instruction's relative operand (a branch target or a RIP-relative
// address) points, from the function's start, and where in the instruction
// its field is; nullopt if it has none.
struct RelativeOperand {
  int64_t target = 0;
  uint8_t field = 0;  // offset of the displacement or immediate in the instruction
  uint8_t width = 0;
};

std::optional<RelativeOperand> relative_operand(const Decoded::Instruction& instruction) {
  const ZydisDecodedInstruction& insn = instruction.insn;
  int64_t next = static_cast<int64_t>(instruction.offset + insn.length);
  for (uint8_t i = 0; i < insn.operand_count_visible; ++i) {
    const ZydisDecodedOperand& operand = instruction.operands[i];
    if (operand.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && operand.imm.is_relative)
      return RelativeOperand{next + operand.imm.value.s, insn.raw.imm[0].offset,
                             static_cast<uint8_t>(insn.raw.imm[0].size / 8)};
    if (operand.type == ZYDIS_OPERAND_TYPE_MEMORY && operand.mem.base == ZYDIS_REGISTER_RIP)
      return RelativeOperand{next + operand.mem.disp.value, insn.raw.disp.offset,
                             static_cast<uint8_t>(insn.raw.disp.size / 8)};
  }
  return std::nullopt;
}

bool is_branch(const Decoded::Instruction& instruction) {
  return instruction.insn.meta.category == ZYDIS_CATEGORY_COND_BR ||
         instruction.insn.meta.category == ZYDIS_CATEGORY_UNCOND_BR;
}

// `theirs` is `ours`, a relative branch, encoded with a displacement of another
// size (jmp rel8 against jmp rel32, 7x rel8 against 0f 8x rel32): the same
// mnemonic (jmp, or the same condition) and the same prefixes, else what
// differs. Where each goes is for the caller to compare.
std::optional<std::string> resized_branch_difference(const Decoded::Instruction& ours,
                                                     const Decoded::Instruction& theirs,
                                                     std::span<const uint8_t> ours_bytes,
                                                     std::span<const uint8_t> theirs_bytes) {
  auto prefixes = [](const Decoded::Instruction& instruction, std::span<const uint8_t> bytes) {
    return bytes.first(std::min<size_t>(instruction.insn.raw.prefix_count, bytes.size()));
  };
  auto ours_prefixes = prefixes(ours, ours_bytes);
  auto theirs_prefixes = prefixes(theirs, theirs_bytes);
  if (ours.insn.mnemonic == theirs.insn.mnemonic && ours.insn.operand_count == theirs.insn.operand_count &&
      std::equal(ours_prefixes.begin(), ours_prefixes.end(), theirs_prefixes.begin(), theirs_prefixes.end()))
    return std::nullopt;
  return fmt::format("{} in the rebuild, {} in the binary", hex_bytes(ours_bytes), hex_bytes(theirs_bytes));
}

// The rebuild's layout of a function against the binary's, with padding left
// out: lets a reference into the function (a jump table entry) be checked by
// the instruction it names rather than by its offset.
struct Layout {
  size_t section = 0;  // the function's section in the rebuild
  uint64_t start = 0;  // the function's offset in it
  uint64_t size = 0;   // in the rebuild
  uint64_t binary_address = 0;
  uint64_t binary_size = 0;
  const Decoded* ours = nullptr;
  const Decoded* theirs = nullptr;
  // Per rebuild section: where the function's PC-relative references into it
  // point (a jump table's start, from which its entries are relative).
  std::map<size_t, std::vector<uint64_t>> referenced;
};

class Checker {
 public:
  Checker(const ElfFile& object, const ElfFile& binary) : object_(object), binary_(binary), index_(binary) {}

  const BinaryIndex& index() const { return index_; }

  std::optional<Mismatch> compare(const Symbol& function, const Symbol& in_binary) {
    visited_.clear();
    if (!in_a_section(object_, function)) return Mismatch{function.name, 0, "not defined in a section of the rebuild"};
    if (function.size == 0)
      return Mismatch{function.name, 0, "size 0 in the rebuild: nothing to compare (not verified)"};
    const Section& section = object_.sections()[function.shndx];
    uint64_t common = std::min(function.size, in_binary.size);
    auto difference = compare_block(section, function.value, common, in_binary.value, 0);
    if (difference || function.size != in_binary.size) {
      // Perhaps only the assembler's padding differs.
      visited_.clear();
      auto by_instruction = compare_instructions(section, function, in_binary);
      if (!by_instruction) return std::nullopt;
      // Where the two were still laid out alike up to the instruction that
      // differs, the byte comparison's first difference (in that instruction)
      // says best what differs; otherwise it may be a mere consequence of the
      // padding, and only the instruction-level difference means anything.
      if (by_instruction->second || !difference || difference->offset < by_instruction->first.offset)
        return Mismatch{function.name, by_instruction->first.offset, std::move(by_instruction->first.what)};
    }
    if (function.size != in_binary.size) {
      std::string what = fmt::format("size {} in the rebuild, {} in the binary", function.size, in_binary.size);
      if (difference) what += fmt::format("; first difference at +0x{:x}: {}", difference->offset, difference->what);
      return Mismatch{function.name, difference ? difference->offset : common, std::move(what)};
    }
    if (difference) return Mismatch{function.name, difference->offset, std::move(difference->what)};
    return std::nullopt;
  }

 private:
  // Compares [start, start + size) of an object section with the binary's bytes
  // at `address`: equal outside relocated fields, each field resolving to what
  // its relocation names.
  std::optional<Difference> compare_block(const Section& section, uint64_t start, uint64_t size, uint64_t address,
                                          int depth) {
    Block saved = block_;
    block_ = {static_cast<size_t>(&section - object_.sections().data()), start};
    auto difference = compare_block_bytes(section, start, size, address, depth);
    block_ = saved;
    return difference;
  }

  std::optional<Difference> compare_block_bytes(const Section& section, uint64_t start, uint64_t size,
                                                uint64_t address, int depth) {
    auto object_all = object_.section_bytes(section);
    if (section.type == SHT_NOBITS || start > object_all.size() || object_all.size() - start < size)
      return Difference{0, fmt::format("{}+0x{:x}: no bytes in the rebuild to compare", section.name, start)};
    auto ours = object_all.subspan(start, size);
    auto theirs = binary_.bytes_at_vaddr(address, size);
    if (theirs.size() != size)
      return Difference{0, fmt::format("0x{:x}..0x{:x} is not file-backed in the binary", address, address + size)};

    return compare_bytes(ours, theirs, address, make_sites(section, start, size, ours, theirs), size, depth);
  }

  // The relocated stretches of [start, start + size) of an object section,
  // relative to `start`; `ours` and `theirs` begin at `start` and at its copy
  // in the binary.
  std::vector<Site> make_sites(const Section& section, uint64_t start, uint64_t size, std::span<const uint8_t> ours,
                               std::span<const uint8_t> theirs) const {
    std::vector<Site> sites;
    for (const Relocation& relocation : object_.relocations_for(section)) {
      if (relocation.type == R_X86_64_NONE || relocation.offset < start || relocation.offset - start >= size) continue;
      uint64_t at = relocation.offset - start;
      Site site{at, at + elf::relocation_width(relocation.type).value_or(1), at, &relocation, GotForm::Kept};
      if (relocation.type == R_X86_64_GOTPCRELX || relocation.type == R_X86_64_REX_GOTPCRELX) {
        site.form = got_form(ours, theirs, at);
        if (site.form != GotForm::Kept) site.begin = at - 2;  // got_form() saw at >= 2
      }
      // The linker may rewrite the instruction around a kind we do not verify
      // (TLS model relaxation starts up to 4 bytes before the field): report
      // the kind, not the rewritten opcode as a difference of the builds.
      if (!verified(relocation.type)) site.begin = at - std::min<uint64_t>(at, 4);
      sites.push_back(site);
    }
    std::sort(sites.begin(), sites.end(), [](const Site& a, const Site& b) { return a.begin < b.begin; });
    return sites;
  }

  // The first `size` bytes of `ours` and `theirs` (the binary's, at `address`):
  // equal outside `sites`, each site resolving to what its relocation names.
  std::optional<Difference> compare_bytes(std::span<const uint8_t> ours, std::span<const uint8_t> theirs,
                                          uint64_t address, const std::vector<Site>& sites, uint64_t size, int depth) {
    size_t next = 0;
    for (uint64_t at = 0; at < size;) {
      if (next < sites.size() && sites[next].begin <= at) {
        const Site& site = sites[next++];
        if (site.end > size)
          return Difference{site.begin, fmt::format("{} field crosses the end of what is compared",
                                                    relocation_name(site.relocation->type))};
        if (auto problem = check_site(site, ours, theirs, address, depth)) return Difference{site.begin, *problem};
        at = std::max(at, site.end);
        continue;
      }
      if (ours[at] != theirs[at])
        return Difference{at,
                          fmt::format("byte 0x{:02x} in the rebuild, 0x{:02x} in the binary", ours[at], theirs[at])};
      ++at;
    }
    return std::nullopt;
  }

  static GotForm got_form(std::span<const uint8_t> ours, std::span<const uint8_t> theirs, uint64_t at) {
    if (at < 2 || at + 4 > ours.size() || at + 4 > theirs.size()) return GotForm::Kept;
    if (ours[at - 2] == theirs[at - 2] && ours[at - 1] == theirs[at - 1]) return GotForm::Kept;
    // mov foo@GOTPCREL(%rip), %reg  ->  lea foo(%rip), %reg (same ModRM)
    if (ours[at - 2] == 0x8b && theirs[at - 2] == 0x8d && ours[at - 1] == theirs[at - 1]) return GotForm::Lea;
    // call *foo@GOTPCREL(%rip)  ->  addr32 call foo
    if (ours[at - 2] == 0xff && ours[at - 1] == 0x15 && theirs[at - 2] == 0x67 && theirs[at - 1] == 0xe8)
      return GotForm::Call;
    // jmp *foo@GOTPCREL(%rip)  ->  jmp foo; nop
    if (ours[at - 2] == 0xff && ours[at - 1] == 0x25 && theirs[at - 2] == 0xe9 && theirs[at + 3] == 0x90)
      return GotForm::Jump;
    return GotForm::Unknown;
  }

  // Call, jump or plain reference: how the instruction uses the field, for messages.
  static std::string_view verb(std::span<const uint8_t> ours, uint64_t at) {
    if (at >= 1 && ours[at - 1] == 0xe8) return "call";
    if (at >= 1 && ours[at - 1] == 0xe9) return "jump";
    if (at >= 2 && ours[at - 2] == 0x0f && (ours[at - 1] & 0xf0) == 0x80) return "jump";
    return "reference";
  }

  std::optional<std::string> check_site(const Site& site, std::span<const uint8_t> ours,
                                        std::span<const uint8_t> theirs, uint64_t address, int depth) {
    const Relocation& relocation = *site.relocation;
    const Symbol& symbol = object_.symbols()[relocation.symbol];
    int64_t A = relocation.addend;
    uint64_t at = site.field;
    uint64_t P = address + at;
    field_ = {block_.section, block_.start + at};
    auto pc_relative = [&](uint64_t field_at, uint64_t field_address, unsigned width) {
      return field_address + sign_extend(read_le(theirs, field_at, width), width);  // V = S + A
    };

    switch (relocation.type) {
      case R_X86_64_PC32:
      case R_X86_64_PLT32:
        return check_target(symbol, A, pc_relative(at, P, 4), verb(ours, at), true, true, depth);
      case R_X86_64_PC64:
        return check_target(symbol, A, pc_relative(at, P, 8), "reference", true, false, depth);
      case R_X86_64_32:
        return check_target(symbol, A, read_le(theirs, at, 4), "reference", false, false, depth);
      case R_X86_64_32S:
        return check_target(symbol, A, sign_extend(read_le(theirs, at, 4), 4), "reference", false, false, depth);
      case R_X86_64_64: {
        // In a PIE or shared object the loader writes the field.
        if (const DynamicRelocation* dynamic = index_.dynamic_relocation_at(P)) {
          if (dynamic->type == R_X86_64_RELATIVE)
            return check_target(symbol, A, static_cast<uint64_t>(dynamic->addend), "reference", false, false, depth);
          if (!dynamic->symbol.empty() && dynamic->symbol == symbol.name && dynamic->addend == A) return std::nullopt;
          return fmt::format("reference: rebuild refers to {}, binary's dynamic relocation at 0x{:x} refers to {}",
                             target_name(symbol, A, false), P, dynamic->symbol.empty() ? "no symbol" : dynamic->symbol);
        }
        return check_target(symbol, A, read_le(theirs, at, 8), "reference", false, false, depth);
      }
      case R_X86_64_GOTPCREL:
      case R_X86_64_GOTPCRELX:
      case R_X86_64_REX_GOTPCRELX:
        switch (site.form) {
          case GotForm::Kept:
            return check_got_slot(symbol, pc_relative(at, P, 4) - A);  // G + GOT
          case GotForm::Lea:
            return check_target(symbol, A, pc_relative(at, P, 4), "reference", true, false, depth);
          case GotForm::Call:
            return check_target(symbol, A, pc_relative(at, P, 4), "call", true, false, depth);
          // The field moved back one byte to make room for the nop.
          case GotForm::Jump:
            return check_target(symbol, A, pc_relative(at - 1, P - 1, 4), "jump", true, false, depth);
          case GotForm::Unknown:
            return fmt::format(
                "{} site rewritten by the linker in a form not verified ({} in the rebuild, {} in the binary)",
                relocation_name(relocation.type), hex_bytes(ours.subspan(at - 2, 2)),
                hex_bytes(theirs.subspan(at - 2, 2)));
        }
        return std::nullopt;
      case R_X86_64_TPOFF32:
        return check_tls_offset(symbol, A, sign_extend(read_le(theirs, at, 4), 4));
      default:
        return fmt::format("{} against {}: this kind of relocation is not verified", relocation_name(relocation.type),
                           target_name(symbol, A));
    }
  }

  // How a message names a relocation's target: the symbol, else the named
  // entity of the rebuild the place falls in ("helper", "table+0x8"), else the
  // section and offset. A PC-relative field usually ends its instruction, so
  // its place is S + A + 4; that guess only shapes the message.
  std::string target_name(const Symbol& symbol, int64_t A, bool pc_relative = true) const {
    if (symbol.type != STT_SECTION && !is_label(symbol)) return symbol.name;
    if (!in_a_section(object_, symbol)) return "?";
    const Section& section = object_.sections()[symbol.shndx];
    uint64_t offset = symbol.value + (symbol.type == STT_SECTION ? A + (pc_relative ? 4 : 0) : 0);
    for (const Symbol& candidate : object_.symbols()) {
      if (candidate.shndx != symbol.shndx || candidate.name.empty() || is_label(candidate) ||
          (candidate.type != STT_FUNC && candidate.type != STT_OBJECT) || offset < candidate.value ||
          offset - candidate.value >= std::max<uint64_t>(candidate.size, 1))
        continue;
      return offset == candidate.value ? candidate.name
                                       : fmt::format("{}+0x{:x}", candidate.name, offset - candidate.value);
    }
    return offset ? fmt::format("{}+0x{:x}", section.name, offset) : section.name;
  }

  std::string wrong(std::string_view how, const Symbol& symbol, int64_t A, uint64_t X, bool pc_relative) const {
    // The binary's place in the same terms as target_name() gives the rebuild's.
    uint64_t place = X + (symbol.type == STT_SECTION ? A + (pc_relative ? 4 : 0) : 0);
    std::string target = target_name(symbol, A, pc_relative);
    std::string found = fmt::format("0x{:x} ({})", place, index_.describe(place));
    if (how == "call") return fmt::format("call target: rebuild calls {}, binary calls {}", target, found);
    if (how == "jump") return fmt::format("jump target: rebuild jumps to {}, binary jumps to {}", target, found);
    return fmt::format("reference: rebuild refers to {}, binary refers to {}", target, found);
  }

  // The linker resolved a field to V = S + A: is S what the relocation names?
  std::optional<std::string> check_target(const Symbol& symbol, int64_t A, uint64_t V, std::string_view how,
                                          bool pc_relative, bool plt_allowed, int depth) {
    uint64_t X = V - A;
    bool named = symbol.type != STT_SECTION && !is_label(symbol);
    if (named) {
      BinaryIndex::Found found = index_.find(symbol);
      if (found.symbol && X == found.symbol->value) return std::nullopt;
      // A preemptible or undefined function is called through its PLT entry.
      if (plt_allowed && symbol.bind != STB_LOCAL && index_.plt_symbol(X) == symbol.name) return std::nullopt;
      // A static the binary's symbol table lacks is still a place in its section.
      if (found.symbol || symbol.bind != STB_LOCAL || !in_a_section(object_, symbol)) {
        std::string message = wrong(how, symbol, A, X, pc_relative);
        if (!found.symbol)
          message += symbol.defined() ? fmt::format(" ({} is {})", symbol.name, found.problem)
                                      : fmt::format(" ({} is not defined in the binary, and that is not its PLT entry)",
                                                    symbol.name);
        return message;
      }
    }
    if (!in_a_section(object_, symbol)) return wrong(how, symbol, A, X, pc_relative);
    const Section& section = object_.sections()[symbol.shndx];
    if (section.flags & SHF_MERGE) {
      // The linker maps a section symbol's whole offset (S + A) through the
      // merge, but a label's own offset before adding A.
      return symbol.type == STT_SECTION ? check_merged(section, symbol.value + A, V, how)
                                        : check_merged(section, symbol.value, X, how);
    }
    if (layout_ && symbol.shndx == layout_->section) {
      if (auto verdict = check_into_function(symbol, A, V, how, pc_relative)) return *verdict;
    }
    uint64_t base = X - symbol.value;  // an ordinary section stays whole
    if (auto known = section_address(symbol.shndx)) {
      if (*known == base) return std::nullopt;
      return wrong(how, symbol, A, X, pc_relative) +
             fmt::format(" ({} is at 0x{:x} in the binary)", section.name, *known);
    }
    if ((section.flags & SHF_EXECINSTR) || section.type == SHT_NOBITS)
      return fmt::format("{}: {} has no symbol the binary knows, so this is not verified",
                         wrong(how, symbol, A, X, pc_relative), section.name);
    // Anonymous read-only data (a jump table, a constant): compare it whole.
    if (!visited_.insert(symbol.shndx).second) return std::nullopt;  // being compared further up, or done
    if (depth >= 8) return fmt::format("{}: references nest too deeply to verify", target_name(symbol, A, pc_relative));
    if (auto difference = compare_block(section, 0, section.size, base, depth + 1))
      return fmt::format("{} ({} at 0x{:x} in the binary): at +0x{:x}: {}", target_name(symbol, A, pc_relative),
                         section.name, base, difference->offset, difference->what);
    return std::nullopt;
  }

  // A reference into the function whose padding differs (a jump table entry,
  // compared while the function is compared by instructions): the place it
  // names in the rebuild and the place it names in the binary must be the same
  // instruction. nullopt when the reference is not into that function; then
  // the usual rule applies. A PC-relative entry of a table is relative to the
  // table's start, which the function refers to; `c` is the entry's distance
  // from it, the same in both (the table's section is kept whole).
  std::optional<std::optional<std::string>> check_into_function(const Symbol& symbol, int64_t A, uint64_t V,
                                                                std::string_view how, bool pc_relative) {
    const Layout& layout = *layout_;
    int64_t c = 0;
    if (pc_relative) {
      auto it = layout.referenced.find(field_.section);
      if (field_.section == layout.section || it == layout.referenced.end()) return std::nullopt;
      std::optional<uint64_t> table;
      for (uint64_t start : it->second)
        if (start <= field_.start && (!table || start > *table)) table = start;
      if (!table) return std::nullopt;
      c = static_cast<int64_t>(field_.start - *table);
    }
    int64_t ours = static_cast<int64_t>(symbol.value) + A - c - static_cast<int64_t>(layout.start);
    if (ours < 0 || static_cast<uint64_t>(ours) > layout.size) return std::nullopt;
    int64_t theirs = static_cast<int64_t>(V - layout.binary_address) - c;
    size_t index = layout.ours->index_at[ours];
    size_t their_index = theirs >= 0 && static_cast<uint64_t>(theirs) <= layout.binary_size
                             ? layout.theirs->index_at[theirs]
                             : kNoIndex;
    if (index != kNoIndex && index == their_index) return std::optional<std::string>{};
    auto place = [](size_t at_index, int64_t offset) {
      return at_index == kNoIndex ? fmt::format("+0x{:x}, not an instruction of the function", offset)
                                  : fmt::format("instruction #{} (+0x{:x})", at_index, offset);
    };
    return fmt::format("{}: rebuild {} {}, binary to {} (padding left out)", how,
                       how == "reference" ? "refers to" : "goes to", place(index, ours), place(their_index, theirs));
  }

  // The function instruction by instruction, padding left out (see Decoded).
  // The difference found, and whether the two had been laid out differently
  // by then.
  std::optional<std::pair<Difference, bool>> compare_instructions(const Section& section, const Symbol& function,
                                                                  const Symbol& in_binary) {
    auto object_all = object_.section_bytes(section);
    if (section.type == SHT_NOBITS || function.value > object_all.size() ||
        object_all.size() - function.value < function.size)
      return std::pair{Difference{0, "no bytes in the rebuild to compare"}, false};
    auto ours_all = object_all.subspan(function.value, function.size);
    auto theirs_all = binary_.bytes_at_vaddr(in_binary.value, in_binary.size);
    if (theirs_all.size() != in_binary.size) return std::pair{Difference{0, "not file-backed in the binary"}, false};
    Decoded ours = decode_function(ours_all);
    Decoded theirs = decode_function(theirs_all);
    if (ours.undecodable_at)
      return std::pair{Difference{*ours.undecodable_at, "the rebuild's code cannot be decoded here"}, true};
    if (theirs.undecodable_at)
      return std::pair{
          Difference{0, fmt::format("the binary's code cannot be decoded at +0x{:x}", *theirs.undecodable_at)}, true};

    Layout layout{static_cast<size_t>(&section - object_.sections().data()),
                  function.value, function.size, in_binary.value, in_binary.size, &ours, &theirs, {}};
    const auto& relocations = object_.relocations_for(section);
    for (const Relocation& relocation : relocations) {
      if (relocation.offset < function.value || relocation.offset - function.value >= function.size) continue;
      const Symbol& target = object_.symbols()[relocation.symbol];
      if (in_a_section(object_, target) && (relocation.type == R_X86_64_PC32))
        layout.referenced[target.shndx].push_back(target.value + relocation.addend + 4);
    }
    layout_ = &layout;
    auto result = pair_instructions(section, function, in_binary, ours_all, theirs_all, ours, theirs);
    layout_ = nullptr;
    return result;
  }

  std::optional<std::pair<Difference, bool>> pair_instructions(const Section& section, const Symbol& function,
                                                               const Symbol& in_binary,
                                                               std::span<const uint8_t> ours_all,
                                                               std::span<const uint8_t> theirs_all,
                                                               const Decoded& ours, const Decoded& theirs) {
    const auto& relocations = object_.relocations_for(section);
    bool shifted = false;
    size_t count = std::min(ours.kept.size(), theirs.kept.size());
    for (size_t i = 0; i < count; ++i) {
      const auto& a = ours.kept[i];
      const auto& b = theirs.kept[i];
      shifted = shifted || a.offset != b.offset;
      auto fail = [&](std::string what) {
        // Instructions of other lengths (a branch relaxed in one only, say)
        // make a first differing byte in them mean nothing.
        return std::pair{Difference{a.offset, fmt::format("instruction #{} (+0x{:x} in the rebuild, +0x{:x} in the "
                                                          "binary, padding left out): {}",
                                                          i, a.offset, b.offset, what)},
                         shifted || a.insn.length != b.insn.length};
      };
      auto ours_here = ours_all.subspan(a.offset, a.insn.length);
      auto theirs_here = theirs_all.subspan(b.offset, b.insn.length);

      std::vector<const Relocation*> in_instruction;
      for (const Relocation& relocation : relocations)
        if (relocation.type != R_X86_64_NONE && relocation.offset >= function.value + a.offset &&
            relocation.offset < function.value + a.offset + a.insn.length)
          in_instruction.push_back(&relocation);
      auto relative = relative_operand(a);

      // A branch to another function, near with a relocation in the rebuild
      // (the target is in another section there) and short in the binary (the
      // user's build had both in one .text, and the assembler relaxed the
      // jump). The same jump or condition, going where the relocation says.
      if (in_instruction.size() == 1 && relative && is_branch(a) && relative->width == 4 &&
          in_instruction.front()->offset == function.value + a.offset + relative->field &&
          (in_instruction.front()->type == R_X86_64_PC32 || in_instruction.front()->type == R_X86_64_PLT32)) {
        auto other = relative_operand(b);
        if (other && other->width != relative->width) {
          if (auto problem = resized_branch_difference(a, b, ours_here, theirs_here)) return fail(*problem);
          const Relocation& relocation = *in_instruction.front();
          // The rebuild's field holds S + A - P, P being the field's place, so
          // its branch goes to S + A + (length - field); the binary's goes to
          // `reached`: the linker's S + A, had it linked this encoding, follows.
          uint64_t reached = in_binary.value + other->target;
          uint64_t V = reached - (a.insn.length - relative->field);
          field_ = {layout_->section, relocation.offset};
          auto problem =
              check_target(object_.symbols()[relocation.symbol], relocation.addend, V, "jump", true, true, 0);
          if (problem) return fail(*problem);
          continue;
        }
      }

      if (!in_instruction.empty()) {
        // As the byte comparison does it, from this instruction on.
        auto ours_rest = ours_all.subspan(a.offset);
        auto theirs_rest = theirs_all.subspan(b.offset);
        auto sites = make_sites(section, function.value + a.offset, a.insn.length, ours_rest, theirs_rest);
        bool rewritten =
            std::any_of(sites.begin(), sites.end(), [](const Site& site) { return site.form != GotForm::Kept; });
        if (theirs_rest.size() < a.insn.length || (!rewritten && a.insn.length != b.insn.length))
          return fail(fmt::format("{} in the rebuild, {} in the binary", hex_bytes(ours_here), hex_bytes(theirs_here)));
        block_ = {layout_->section, function.value + a.offset};
        auto difference = compare_bytes(ours_rest, theirs_rest, in_binary.value + b.offset, sites, a.insn.length, 0);
        block_ = {};
        if (difference) return fail(difference->what);
        continue;
      }

      if (relative) {
        auto other = relative_operand(b);
        if (!other || a.insn.mnemonic != b.insn.mnemonic || a.insn.operand_count != b.insn.operand_count)
          return fail(fmt::format("{} in the rebuild, {} in the binary", hex_bytes(ours_here), hex_bytes(theirs_here)));
        // A branch may be short in one and near in the other; anything else
        // about the instruction must be the same bytes.
        if (a.insn.length == b.insn.length && relative->field == other->field) {
          for (size_t k = 0; k < a.insn.length; ++k) {
            if (k >= relative->field && k < size_t{relative->field} + relative->width) continue;
            if (ours_here[k] != theirs_here[k])
              return fail(fmt::format("byte 0x{:02x} in the rebuild, 0x{:02x} in the binary at +{} of the instruction",
                                      ours_here[k], theirs_here[k], k));
          }
        } else if (relative->width == other->width || !is_branch(a)) {
          return fail(fmt::format("{} in the rebuild, {} in the binary", hex_bytes(ours_here), hex_bytes(theirs_here)));
        } else if (auto problem = resized_branch_difference(a, b, ours_here, theirs_here)) {
          return fail(*problem);
        }
        auto index_of = [](const Decoded& decoded, int64_t target, uint64_t size) {
          return target >= 0 && static_cast<uint64_t>(target) <= size ? decoded.index_at[target] : kNoIndex;
        };
        size_t ours_target = index_of(ours, relative->target, function.size);
        size_t theirs_target = index_of(theirs, other->target, in_binary.size);
        if (ours_target == kNoIndex)
          return fail(fmt::format("refers to +0x{:x}, {} without a relocation: not verified", relative->target,
                                  relative->target < 0 || uint64_t(relative->target) > function.size
                                      ? "outside the function"
                                      : "inside an instruction"));
        if (ours_target != theirs_target) {
          std::string theirs_as = theirs_target == kNoIndex
                                      ? fmt::format("+0x{:x}, not an instruction of the function", other->target)
                                      : fmt::format("instruction #{} (+0x{:x})", theirs_target, other->target);
          return fail(fmt::format("rebuild goes to instruction #{} (+0x{:x}), binary to {}", ours_target,
                                  relative->target, theirs_as));
        }
        continue;
      }

      if (a.insn.length != b.insn.length || !std::equal(ours_here.begin(), ours_here.end(), theirs_here.begin()))
        return fail(fmt::format("{} in the rebuild, {} in the binary", hex_bytes(ours_here), hex_bytes(theirs_here)));
    }
    if (ours.kept.size() != theirs.kept.size()) {
      uint64_t at = ours.offset_of(count, function.size);
      return std::pair{Difference{at, fmt::format("{} instructions in the rebuild, {} in the binary, padding left out",
                                                  ours.kept.size(), theirs.kept.size())},
                       shifted || at != theirs.offset_of(count, in_binary.size)};
    }
    return std::nullopt;
  }

  // A string or constant of a merged section: the linker moved it and may share
  // it, so only its contents can be compared.
  std::optional<std::string> check_merged(const Section& section, uint64_t offset, uint64_t address,
                                          std::string_view how) const {
    auto bytes = object_.section_bytes(section);
    uint64_t entsize = std::max<uint64_t>(section.entsize, 1);
    if (offset >= bytes.size())
      return fmt::format("{}: rebuild refers to {}+0x{:x}, past its end", how, section.name, offset);
    uint64_t begin = offset;
    uint64_t end = 0;
    if (section.flags & SHF_STRINGS) {
      for (end = begin; end + entsize <= bytes.size(); end += entsize) {
        auto unit = bytes.subspan(end, entsize);
        if (std::all_of(unit.begin(), unit.end(), [](uint8_t b) { return b == 0; })) break;
      }
      end = std::min<uint64_t>(end + entsize, bytes.size());
    } else {
      begin = offset - offset % entsize;
      end = std::min<uint64_t>(begin + entsize, bytes.size());
      address -= offset - begin;
    }
    auto ours = bytes.subspan(begin, end - begin);
    auto theirs = binary_.bytes_at_vaddr(address, ours.size());
    if (theirs.size() == ours.size() && std::equal(ours.begin(), ours.end(), theirs.begin())) return std::nullopt;
    bool strings = section.flags & SHF_STRINGS;
    auto show = [&](std::span<const uint8_t> b) { return strings ? quoted(b) : hex_bytes(b); };
    return fmt::format("{}: rebuild refers to {} ({}+0x{:x}), binary refers to 0x{:x} holding {}", how, show(ours),
                       section.name, begin, address, theirs.size() == ours.size() ? show(theirs) : "no file bytes");
  }

  // A GOT slot must be the symbol's: its dynamic relocation names it, or it
  // holds the symbol's address.
  std::optional<std::string> check_got_slot(const Symbol& symbol, uint64_t slot) const {
    if (symbol.type == STT_SECTION || is_label(symbol))
      return fmt::format("GOT entry for {}: a GOT reference to an anonymous place is not verified",
                         target_name(symbol, 0));
    BinaryIndex::Found found = index_.find(symbol);
    const DynamicRelocation* dynamic = index_.dynamic_relocation_at(slot);
    if (dynamic && !dynamic->symbol.empty()) {
      if (dynamic->symbol == symbol.name &&
          (dynamic->type == R_X86_64_GLOB_DAT || dynamic->type == R_X86_64_64 || dynamic->type == R_X86_64_JUMP_SLOT))
        return std::nullopt;
      return fmt::format("GOT entry: rebuild loads the address of {}, binary's slot at 0x{:x} is for {}", symbol.name,
                         slot, dynamic->symbol);
    }
    std::optional<uint64_t> held;
    if (dynamic && dynamic->type == R_X86_64_RELATIVE) {
      held = static_cast<uint64_t>(dynamic->addend);
    } else if (!dynamic) {
      if (auto bytes = binary_.bytes_at_vaddr(slot, 8); bytes.size() == 8) held = read_le(bytes, 0, 8);
    }
    if (held && found.symbol && *held == found.symbol->value) return std::nullopt;
    if (!held)
      return fmt::format("GOT entry: rebuild loads the address of {}, binary's slot at 0x{:x} cannot be read{}",
                         symbol.name, slot, dynamic ? " (an unexpected dynamic relocation)" : "");
    return fmt::format("GOT entry: rebuild loads the address of {}, binary's slot at 0x{:x} holds 0x{:x} ({}){}",
                       symbol.name, slot, *held, index_.describe(*held),
                       found.symbol ? "" : fmt::format("; {} is {}", symbol.name, found.problem));
  }

  // Local-exec TLS (psABI: TPOFF32 = S + A - TLS block end): the offset must be
  // the symbol's from the end of the binary's PT_TLS block, whose symbols' values
  // are offsets into the block.
  std::optional<std::string> check_tls_offset(const Symbol& symbol, int64_t A, int64_t field) {
    std::optional<uint64_t> S;
    if (symbol.type != STT_SECTION && !is_label(symbol)) {
      if (const Symbol* found = index_.find(symbol).symbol) S = found->value;
    }
    if (!S && in_a_section(object_, symbol)) {
      if (auto base = section_address(symbol.shndx)) S = *base + symbol.value;
    }
    auto tls = binary_.tls_segment();
    if (!S || !tls)
      return fmt::format("thread-local {}: the binary has no {} to verify it against", target_name(symbol, A, false),
                         tls ? "such thread-local" : "TLS segment");
    uint64_t align = std::max<uint64_t>(tls->align, 1);
    uint64_t block = (tls->memsz + align - 1) / align * align;
    int64_t expected = static_cast<int64_t>(*S + A - block);
    if (field == expected) return std::nullopt;
    return fmt::format("thread-local: rebuild refers to {} (offset {} from the thread pointer), binary uses offset {}",
                       target_name(symbol, A, false), expected, field);
  }

  // Where the binary put an object section that the linker keeps whole: from
  // any named symbol in it, provided all that the binary knows agree.
  std::optional<uint64_t> section_address(size_t index) {
    if (auto it = section_addresses_.find(index); it != section_addresses_.end()) return it->second;
    std::optional<uint64_t> address;
    for (const Symbol& symbol : object_.symbols()) {
      if (symbol.shndx != index || symbol.name.empty() || is_label(symbol) || symbol.type == STT_SECTION ||
          symbol.type == STT_FILE)
        continue;
      BinaryIndex::Found found = index_.find(symbol);
      if (!found.symbol) continue;
      uint64_t base = found.symbol->value - symbol.value;
      if (address && *address != base) {
        address.reset();
        break;
      }
      address = base;
    }
    section_addresses_[index] = address;
    return address;
  }

  const ElfFile& object_;
  const ElfFile& binary_;
  BinaryIndex index_;
  std::map<size_t, std::optional<uint64_t>> section_addresses_;
  std::set<size_t> visited_;  // anonymous sections compared for the current function
  struct Block {
    size_t section = 0;
    uint64_t start = 0;
  };
  Block block_;             // the block compare_block() is comparing
  Block field_;             // the relocated field check_site() is checking: section and offset
  const Layout* layout_ = nullptr;  // while a function is compared by instructions
};

bool is_function(const Symbol& symbol) { return symbol.type == STT_FUNC || symbol.type == STT_GNU_IFUNC; }

}  // namespace

std::optional<Mismatch> compare_function(const elf::ElfFile& object, const elf::Symbol& function,
                                         const elf::ElfFile& binary, const elf::Symbol& in_binary) {
  return Checker(object, binary).compare(function, in_binary);
}

std::vector<Mismatch> check_functions(const elf::ElfFile& object, const elf::ElfFile& binary,
                                      const std::vector<std::string>& names) {
  Checker checker(object, binary);
  std::vector<Mismatch> mismatches;
  for (const std::string& name : names) {
    bool seen = false;
    for (const Symbol& function : object.symbols()) {
      if (function.name != name || !is_function(function) || !function.defined()) continue;
      seen = true;
      BinaryIndex::Found found = checker.index().find(function);
      if (!found.symbol) {
        mismatches.push_back({name, 0, found.problem});
      } else if (!is_function(*found.symbol)) {
        mismatches.push_back({name, 0, "not a function in the binary"});
      } else if (auto mismatch = checker.compare(function, *found.symbol)) {
        mismatches.push_back(std::move(*mismatch));
      }
    }
    if (!seen) mismatches.push_back({name, 0, "not found in the rebuild"});
  }
  return mismatches;
}

}  // namespace suture::build::fidelity
