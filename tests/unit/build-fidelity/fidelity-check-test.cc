// The fidelity check against what this machine's gcc and ld produce: the same
// sources as objects and as linked binaries must match function by function;
// a binary from other sources, other flags, or with one field retargeted must
// not, and the message must name the function and what differs.
#include "build/fidelity/fidelity-check.h"

#include <Zydis/Zydis.h>
#include <elf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace suture::build::fidelity {
namespace {

using elf::ElfFile;
using elf::Symbol;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::vector<std::string> kSources = {"fid-a", "fid-b", "fid-c", "fid-main"};
const std::vector<std::string> kLibrarySources = {"fid-a", "fid-b", "fid-c"};

ElfFile fixture(const std::string& name) { return ElfFile::open(std::string(FIDELITY_FIXTURES) + "/" + name); }

std::vector<std::string> functions_of(const ElfFile& object) {
  std::vector<std::string> names;
  for (const Symbol& symbol : object.symbols())
    if (symbol.type == STT_FUNC && symbol.defined()) names.push_back(symbol.name);
  return names;
}

// Every function of every object (prefix "pie-" or "pic-"), checked against one binary.
std::vector<Mismatch> check_build(const std::string& prefix, const std::vector<std::string>& sources,
                                  const ElfFile& binary, size_t* checked = nullptr) {
  std::vector<Mismatch> all;
  for (const std::string& source : sources) {
    ElfFile object = fixture(prefix + source + ".o");
    auto names = functions_of(object);
    if (checked) *checked += names.size();
    for (Mismatch& mismatch : check_functions(object, binary, names)) all.push_back(std::move(mismatch));
  }
  return all;
}

std::string describe(const std::vector<Mismatch>& mismatches) {
  std::string out;
  for (const Mismatch& m : mismatches) out += m.function + " +0x" + std::to_string(m.offset) + ": " + m.what + "\n";
  return out;
}

const Symbol& symbol_named(const ElfFile& file, const std::string& name, const std::string& source = "") {
  for (const Symbol& symbol : file.symbols())
    if (symbol.name == name && symbol.defined() && (source.empty() || symbol.file == source)) return symbol;
  throw std::runtime_error(file.name() + ": no symbol " + name);
}

// A symbol's name, or its section's for a section symbol.
std::string name_of(const ElfFile& file, const Symbol& symbol) {
  return symbol.type == STT_SECTION ? file.sections()[symbol.shndx].name : symbol.name;
}

// The object's relocation of `function` of `type` against `target`, as an offset
// from the function's start.
uint64_t relocation_offset(const ElfFile& object, const std::string& function, uint32_t type,
                           const std::string& target) {
  const Symbol& symbol = symbol_named(object, function);
  for (const auto& relocation : object.relocations_for(object.sections()[symbol.shndx]))
    if (relocation.type == type && name_of(object, object.symbols()[relocation.symbol]) == target)
      return relocation.offset - symbol.value;
  throw std::runtime_error(object.name() + ": " + function + " has no such relocation against " + target);
}

int32_t read32(const ElfFile& file, uint64_t address) {
  int32_t value;
  std::memcpy(&value, file.bytes_at_vaddr(address, 4).data(), 4);
  return value;
}

// A copy of `file` with bytes at a virtual address replaced.
ElfFile patched(const ElfFile& file, uint64_t address, const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> copy(file.bytes().begin(), file.bytes().end());
  for (const auto& segment : file.segments()) {
    if (segment.type != PT_LOAD || address < segment.vaddr || address - segment.vaddr >= segment.filesz) continue;
    std::copy(bytes.begin(), bytes.end(), copy.begin() + segment.offset + (address - segment.vaddr));
    return ElfFile::parse(std::move(copy), file.name() + " (tampered)");
  }
  throw std::runtime_error("address not file-backed");
}

ElfFile with_field(const ElfFile& file, uint64_t address, int32_t value) {
  std::vector<uint8_t> bytes(4);
  std::memcpy(bytes.data(), &value, 4);
  return patched(file, address, bytes);
}

// --- The same build matches ------------------------------------------------

TEST(FidelityCheck, PieBuildMatchesItsExecutable) {
  ElfFile binary = fixture("fid-pie");
  size_t checked = 0;
  auto mismatches = check_build("pie-", kSources, binary, &checked);
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);
  EXPECT_GE(checked, 13u);
}

TEST(FidelityCheck, PicBuildMatchesTheExecutableTheLinkerRelaxed) {
  ElfFile binary = fixture("fid-pic-pie");
  auto mismatches = check_build("pic-", kSources, binary);
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);

  // The relaxations the check had to accept really happened.
  ElfFile object_a = fixture("pic-fid-a.o");
  ElfFile object_c = fixture("pic-fid-c.o");
  uint64_t lea =
      symbol_named(binary, "bump").value + relocation_offset(object_a, "bump", R_X86_64_REX_GOTPCRELX, "counter");
  EXPECT_EQ(binary.bytes_at_vaddr(lea - 2, 1)[0], 0x8d);  // mov -> lea
  uint64_t call =
      symbol_named(binary, "via_got").value + relocation_offset(object_c, "via_got", R_X86_64_GOTPCRELX, "bump");
  EXPECT_EQ(binary.bytes_at_vaddr(call - 2, 1)[0], 0x67);  // call * -> addr32 call
  EXPECT_EQ(binary.bytes_at_vaddr(call - 1, 1)[0], 0xe8);
  uint64_t jump = symbol_named(binary, "tail_via_got").value +
                  relocation_offset(object_c, "tail_via_got", R_X86_64_GOTPCRELX, "step");
  EXPECT_EQ(binary.bytes_at_vaddr(jump - 2, 1)[0], 0xe9);  // jmp * -> jmp; nop
  EXPECT_EQ(binary.bytes_at_vaddr(jump + 3, 1)[0], 0x90);
  // puts stays behind its GOT slot: that path was checked too.
  uint64_t got_call =
      symbol_named(binary, "via_got").value + relocation_offset(object_c, "via_got", R_X86_64_GOTPCRELX, "puts");
  EXPECT_EQ(binary.bytes_at_vaddr(got_call - 2, 1)[0], 0xff);
}

TEST(FidelityCheck, PicBuildMatchesItsSharedLibrary) {
  // Calls between exported functions go through the library's own PLT, and
  // `counter` through a GOT slot named by a GLOB_DAT relocation.
  ElfFile binary = fixture("libfid.so");
  auto mismatches = check_build("pic-", kLibrarySources, binary);
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);
}

TEST(FidelityCheck, StaticsOfTheSameNameAreToldApartByFile) {
  ElfFile binary = fixture("fid-pie");
  ElfFile object_a = fixture("pie-fid-a.o");
  ElfFile object_b = fixture("pie-fid-b.o");
  EXPECT_TRUE(check_functions(object_a, binary, {"helper"}).empty());
  EXPECT_TRUE(check_functions(object_b, binary, {"helper"}).empty());

  // fid-a.c's helper is not fid-b.c's.
  auto mismatch =
      compare_function(object_a, symbol_named(object_a, "helper"), binary, symbol_named(binary, "helper", "fid-b.c"));
  ASSERT_TRUE(mismatch);
  EXPECT_EQ(mismatch->function, "helper");
}

TEST(FidelityCheck, LocalExecThreadLocalsAreVerified) {
  ElfFile binary = fixture("fid-pie");
  ElfFile object = fixture("pie-fid-tls.o");
  EXPECT_TRUE(check_functions(object, binary, {"tls_bump"}).empty());

  // tls_bump's first access is tls_calls at -4; make it -8 (tls_counter's).
  uint64_t field =
      symbol_named(binary, "tls_bump").value + relocation_offset(object, "tls_bump", R_X86_64_TPOFF32, "tls_calls");
  ElfFile tampered = with_field(binary, field, read32(binary, field) - 4);
  auto mismatches = check_functions(object, tampered, {"tls_bump"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, StartsWith("thread-local: rebuild refers to tls_calls"));
}

TEST(FidelityCheck, WhatCannotBeVerifiedIsRefusedAndSaysSo) {
  // An initial-exec access the linker rewrote into local-exec: not verified.
  ElfFile binary = fixture("fid-pie");
  ElfFile object = fixture("pie-fid-tls.o");
  auto mismatches = check_functions(object, binary, {"tls_peek"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_EQ(mismatches[0].function, "tls_peek");
  EXPECT_THAT(mismatches[0].what, HasSubstr("R_X86_64_GOTTPOFF against tls_elsewhere"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("not verified"));
}

TEST(FidelityCheck, RelaxedCallToAnotherFunction) {
  ElfFile binary = fixture("fid-pic-pie");
  ElfFile object = fixture("pic-fid-c.o");
  uint64_t field =
      symbol_named(binary, "via_got").value + relocation_offset(object, "via_got", R_X86_64_GOTPCRELX, "bump");
  int64_t other = int64_t(symbol_named(binary, "step").value) - int64_t(symbol_named(binary, "bump").value);
  ElfFile tampered = with_field(binary, field, read32(binary, field) + int32_t(other));

  auto mismatches = check_functions(object, tampered, {"via_got"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, StartsWith("call target: rebuild calls bump, binary calls 0x"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("(step)"));
}

// --- Other sources or flags do not -------------------------------------------

TEST(FidelityCheck, ChangedConstantMismatchesOnlyItsFunction) {
  ElfFile binary = fixture("fid-changed");
  auto mismatches = check_build("pie-", kSources, binary);
  ASSERT_EQ(mismatches.size(), 1u) << describe(mismatches);
  EXPECT_EQ(mismatches[0].function, "step");
  // lea 0x3e8(%rdi),%eax against lea 0x3e9(%rdi),%eax
  EXPECT_EQ(mismatches[0].what, "byte 0xe8 in the rebuild, 0xe9 in the binary");
  EXPECT_EQ(mismatches[0].offset, 2u);
}

TEST(FidelityCheck, OtherOptimisationLevelMismatchesAndNamesTheFunctions) {
  ElfFile binary = fixture("fid-o1");
  auto mismatches = check_build("pie-", kSources, binary);
  ASSERT_FALSE(mismatches.empty());
  auto loop =
      std::find_if(mismatches.begin(), mismatches.end(), [](const Mismatch& m) { return m.function == "loop_sum"; });
  ASSERT_NE(loop, mismatches.end()) << describe(mismatches);
  EXPECT_THAT(loop->what, ::testing::AnyOf(StartsWith("size "), StartsWith("byte ")));
  for (const Mismatch& m : mismatches) EXPECT_FALSE(m.what.empty()) << m.function;
}

TEST(FidelityCheck, NamesWhatIsMissing) {
  ElfFile object = fixture("pie-fid-main.o");
  auto mismatches = check_functions(object, fixture("libfid.so"), {"main", "no_such_function"});
  ASSERT_EQ(mismatches.size(), 2u);
  EXPECT_EQ(mismatches[0].function, "main");
  EXPECT_EQ(mismatches[0].what, "not found in the binary");
  EXPECT_EQ(mismatches[1].function, "no_such_function");
  EXPECT_EQ(mismatches[1].what, "not found in the rebuild");
}

// --- Retargeted fields are caught ---------------------------------------------

TEST(FidelityCheck, CallToTheOtherStatic) {
  ElfFile binary = fixture("fid-pie");
  ElfFile object = fixture("pie-fid-b.o");
  uint64_t offset = relocation_offset(object, "twice", R_X86_64_PC32, ".text.helper");
  uint64_t field = symbol_named(binary, "twice").value + offset;
  int64_t other = int64_t(symbol_named(binary, "helper", "fid-a.c").value) -
                  int64_t(symbol_named(binary, "helper", "fid-b.c").value);
  ElfFile tampered = with_field(binary, field, read32(binary, field) + int32_t(other));

  auto mismatches = check_functions(object, tampered, {"twice"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_EQ(mismatches[0].offset, offset);
  EXPECT_THAT(mismatches[0].what, StartsWith("call target: rebuild calls helper, binary calls 0x"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("(helper)"));
}

TEST(FidelityCheck, CallToTheWrongPltEntry) {
  ElfFile binary = fixture("fid-pie");
  ElfFile object = fixture("pie-fid-a.o");
  uint64_t greet = symbol_named(binary, "greet").value;
  uint64_t puts_field = greet + relocation_offset(object, "greet", R_X86_64_PLT32, "puts");
  uint64_t printf_field = greet + relocation_offset(object, "greet", R_X86_64_PLT32, "printf");
  uint64_t printf_plt = printf_field + 4 + read32(binary, printf_field);
  ElfFile tampered = with_field(binary, puts_field, int32_t(printf_plt - (puts_field + 4)));

  EXPECT_TRUE(check_functions(object, binary, {"greet"}).empty());
  auto mismatches = check_functions(object, tampered, {"greet"});
  ASSERT_EQ(mismatches.size(), 1u);
  // puts("greeted") is greet's tail call.
  EXPECT_THAT(mismatches[0].what, StartsWith("jump target: rebuild jumps to puts, binary jumps to 0x"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("(printf@plt)"));
}

TEST(FidelityCheck, ChangedStringLiteral) {
  ElfFile binary = fixture("fid-pie");
  ElfFile object = fixture("pie-fid-a.o");
  const auto* rodata = binary.find_section(".rodata");
  ASSERT_NE(rodata, nullptr);
  auto bytes = binary.section_bytes(*rodata);
  std::string wanted("greeted", 8);
  auto at = std::search(bytes.begin(), bytes.end(), wanted.begin(), wanted.end());
  ASSERT_NE(at, bytes.end());
  ElfFile tampered = patched(binary, rodata->addr + (at - bytes.begin()) + 6, {'x'});

  auto mismatches = check_functions(object, tampered, {"greet"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, HasSubstr("rebuild refers to \"greeted\""));
  EXPECT_THAT(mismatches[0].what, HasSubstr("holding \"greetex\""));
}

TEST(FidelityCheck, JumpTableEntryRetargeted) {
  ElfFile binary = fixture("fid-pie");
  ElfFile object = fixture("pie-fid-a.o");
  // The table is anonymous: classify reaches it as .rodata.classify - 4.
  uint64_t field =
      symbol_named(binary, "classify").value + relocation_offset(object, "classify", R_X86_64_PC32, ".rodata.classify");
  uint64_t table = field + 4 + read32(binary, field);
  ElfFile tampered = with_field(binary, table, read32(binary, table) + 1);

  auto mismatches = check_functions(object, tampered, {"classify"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, HasSubstr(".rodata.classify"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("at +0x0"));
}

TEST(FidelityCheck, GotSlotOfAnotherSymbol) {
  ElfFile binary = fixture("libfid.so");
  ElfFile object = fixture("pic-fid-a.o");
  uint64_t field =
      symbol_named(binary, "bump").value + relocation_offset(object, "bump", R_X86_64_REX_GOTPCRELX, "counter");
  // Every other slot of the GOT belongs to something else.
  ElfFile tampered = with_field(binary, field, read32(binary, field) + 8);

  auto mismatches = check_functions(object, tampered, {"bump"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, StartsWith("GOT entry: rebuild loads the address of counter, binary's slot at 0x"));
}


// --- Padding the assembler chose differently ----------------------------------

// fid-pad is fid-pad.c's assembly assembled with other code alignment; the
// rebuild pie-fid-pad.o with the compiler's.

struct Instruction {
  uint64_t address = 0;
  ZydisDecodedInstruction insn;
  std::array<ZydisDecodedOperand, ZYDIS_MAX_OPERAND_COUNT> operands;
};

std::vector<Instruction> instructions_of(const ElfFile& binary, const std::string& function) {
  const Symbol& symbol = symbol_named(binary, function);
  auto code = binary.bytes_at_vaddr(symbol.value, symbol.size);
  ZydisDecoder decoder;
  ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  std::vector<Instruction> all;
  for (uint64_t at = 0; at < code.size();) {
    Instruction instruction;
    instruction.address = symbol.value + at;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, code.data() + at, code.size() - at, &instruction.insn,
                                             instruction.operands.data())))
      throw std::runtime_error("cannot decode " + function);
    at += instruction.insn.length;
    all.push_back(instruction);
  }
  return all;
}

const Instruction& instruction_at(const std::vector<Instruction>& all, uint64_t address) {
  for (const Instruction& instruction : all)
    if (instruction.address == address) return instruction;
  throw std::runtime_error("no instruction there");
}

TEST(FidelityCheck, PaddingOnlyDifferenceIsAccepted) {
  ElfFile binary = fixture("fid-pad");
  ElfFile object = fixture("pie-fid-pad.o");
  // The padding really differs.
  ASSERT_NE(symbol_named(binary, "pad_loop").size, symbol_named(object, "pad_loop").size);
  auto mismatches = check_functions(object, binary, {"pad_loop", "main"});
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);
}

TEST(FidelityCheck, ChangedInstructionAfterPaddingIsRefused) {
  ElfFile binary = fixture("fid-pad");
  ElfFile object = fixture("pie-fid-pad.o");
  // sum += 0x12345, one of the switch's cases, after padding: make it 0x12346.
  const Symbol& function = symbol_named(binary, "pad_loop");
  auto code = binary.bytes_at_vaddr(function.value, function.size);
  const std::vector<uint8_t> constant = {0x45, 0x23, 0x01, 0x00};
  auto at = std::search(code.begin(), code.end(), constant.begin(), constant.end());
  ASSERT_NE(at, code.end());
  ElfFile tampered = patched(binary, function.value + (at - code.begin()), {0x46});

  auto mismatches = check_functions(object, tampered, {"pad_loop"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, StartsWith("instruction #"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("45 23 01 00 in the rebuild"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("46 23 01 00 in the binary"));
}

TEST(FidelityCheck, BranchToAnotherInstructionAfterPaddingIsRefused) {
  ElfFile binary = fixture("fid-pad");
  ElfFile object = fixture("pie-fid-pad.o");
  const Symbol& function = symbol_named(binary, "pad_loop");
  auto all = instructions_of(binary, "pad_loop");
  // A short conditional branch within the function, retargeted to the
  // instruction after its target.
  for (const Instruction& branch : all) {
    if (branch.insn.meta.category != ZYDIS_CATEGORY_COND_BR || branch.insn.raw.imm[0].size != 8) continue;
    uint64_t target = branch.address + branch.insn.length + branch.operands[0].imm.value.s;
    if (target < function.value || target >= function.value + function.size) continue;
    const Instruction& there = instruction_at(all, target);
    if (there.insn.mnemonic == ZYDIS_MNEMONIC_NOP || branch.operands[0].imm.value.s + there.insn.length > 127)
      continue;
    uint8_t displacement = uint8_t(branch.operands[0].imm.value.s + there.insn.length);
    ElfFile tampered = patched(binary, branch.address + branch.insn.raw.imm[0].offset, {displacement});

    auto mismatches = check_functions(object, tampered, {"pad_loop"});
    ASSERT_EQ(mismatches.size(), 1u);
    EXPECT_THAT(mismatches[0].what, StartsWith("instruction #"));
    EXPECT_THAT(mismatches[0].what, HasSubstr("rebuild goes to instruction #"));
    return;
  }
  FAIL() << "no short conditional branch in pad_loop";
}

TEST(FidelityCheck, JumpTableEntryToAnotherInstructionAfterPaddingIsRefused) {
  ElfFile binary = fixture("fid-pad");
  ElfFile object = fixture("pie-fid-pad.o");
  uint64_t field =
      symbol_named(binary, "pad_loop").value + relocation_offset(object, "pad_loop", R_X86_64_PC32, ".rodata.pad_loop");
  uint64_t table = field + 4 + read32(binary, field);
  auto all = instructions_of(binary, "pad_loop");
  const Instruction& case0 = instruction_at(all, table + read32(binary, table));
  ElfFile tampered = with_field(binary, table, read32(binary, table) + case0.insn.length);

  auto mismatches = check_functions(object, tampered, {"pad_loop"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, HasSubstr(".rodata.pad_loop"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("rebuild refers to instruction #"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("binary to instruction #"));
}

// --- Branches the assembler relaxed in the binary only -------------------------

// fid-branch is fid-tail.c and fid-branch.s built as users build, one .text per
// file; pie-fid-tail.o and pie-fid-branch.o the rebuild, a section per function.

// The instruction of `function` that is a branch with a `bits`-bit displacement
// and the given first opcode byte (after any prefixes), the n-th such.
Instruction branch_in(const std::vector<Instruction>& all, unsigned bits, uint8_t opcode, size_t n = 0) {
  for (const Instruction& instruction : all) {
    auto category = instruction.insn.meta.category;
    if ((category != ZYDIS_CATEGORY_COND_BR && category != ZYDIS_CATEGORY_UNCOND_BR) ||
        instruction.insn.raw.imm[0].size != bits || instruction.insn.opcode != opcode)
      continue;
    if (n-- == 0) return instruction;
  }
  throw std::runtime_error("no such branch");
}

uint64_t target_of(const Instruction& branch) {
  return branch.address + branch.insn.length + branch.operands[0].imm.value.s;
}

// A copy of `binary` with a short branch going to `target` instead.
ElfFile short_branch_to(const ElfFile& binary, const Instruction& branch, uint64_t target) {
  int64_t displacement = int64_t(target) - int64_t(branch.address + branch.insn.length);
  if (displacement < -128 || displacement > 127) throw std::runtime_error("target out of rel8 reach");
  return patched(binary, branch.address + branch.insn.raw.imm[0].offset, {uint8_t(displacement)});
}

// The rebuild's byte at `offset` into `function`.
uint8_t object_byte(const ElfFile& object, const std::string& function, uint64_t offset) {
  const Symbol& symbol = symbol_named(object, function);
  return object.section_bytes(object.sections()[symbol.shndx])[symbol.value + offset];
}

TEST(FidelityCheck, TailCallTheAssemblerMadeShortIsAccepted) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-tail.o");
  // The premise: a 5-byte jmp with a relocation in the rebuild, 2 bytes in the binary.
  uint64_t field = relocation_offset(object, "tail_bump", R_X86_64_PC32, ".text.scaled");
  ASSERT_EQ(object_byte(object, "tail_bump", field - 1), 0xe9);
  Instruction jump = branch_in(instructions_of(binary, "tail_bump"), 8, 0xeb);
  ASSERT_EQ(target_of(jump), symbol_named(binary, "scaled").value);
  ASSERT_EQ(symbol_named(binary, "tail_bump").size + 3, symbol_named(object, "tail_bump").size);

  auto mismatches = check_functions(object, binary, {"tail_bump", "tail_nudge", "scaled", "shifted", "main"});
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);
}

TEST(FidelityCheck, ConditionalTailCallsTheAssemblerMadeShortAreAccepted) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-branch.o");
  auto all = instructions_of(binary, "branch_pick");
  // jne branch_odd (0f 85 rel32 in the rebuild) and jmp branch_even, both short.
  ASSERT_EQ(object_byte(object, "branch_pick", relocation_offset(object, "branch_pick", R_X86_64_PC32,
                                                                 ".text.branch_odd") - 2),
            0x0f);
  EXPECT_EQ(target_of(branch_in(all, 8, 0x75)), symbol_named(binary, "branch_odd").value);
  EXPECT_EQ(target_of(branch_in(all, 8, 0xeb)), symbol_named(binary, "branch_even").value);

  auto mismatches = check_functions(object, binary, {"branch_pick", "branch_odd", "branch_even"});
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);
}

TEST(FidelityCheck, BranchesInsideTheFunctionShortenedByATailCallAreAccepted) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-branch.o");
  // branch_cross's je and branch_skip's jmp span a tail call: near in the
  // rebuild, short in the binary, where the tail call is 3 bytes shorter.
  ASSERT_EQ(object_byte(object, "branch_cross", 4), 0x0f);
  ASSERT_EQ(object_byte(object, "branch_skip", 7), 0xe9);
  auto cross = instructions_of(binary, "branch_cross");
  auto skip = instructions_of(binary, "branch_skip");
  EXPECT_EQ(target_of(branch_in(cross, 8, 0x74)), cross.back().address);  // to the ret
  EXPECT_EQ(target_of(branch_in(skip, 8, 0xeb)), skip.back().address);

  auto mismatches = check_functions(object, binary, {"branch_cross", "branch_skip"});
  EXPECT_TRUE(mismatches.empty()) << describe(mismatches);
}

TEST(FidelityCheck, ShortTailCallToAnotherFunctionIsRefused) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-tail.o");
  Instruction jump = branch_in(instructions_of(binary, "tail_bump"), 8, 0xeb);
  ElfFile tampered = short_branch_to(binary, jump, symbol_named(binary, "shifted").value);

  auto mismatches = check_functions(object, tampered, {"tail_bump"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_EQ(mismatches[0].offset, jump.address - symbol_named(binary, "tail_bump").value);
  EXPECT_THAT(mismatches[0].what, HasSubstr("jump target: rebuild jumps to scaled, binary jumps to 0x"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("(shifted)"));
}

TEST(FidelityCheck, OtherFunctionWithTheSameBodyButAnotherTailCallIsRefused) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-tail.o");
  // tail_nudge is tail_bump but for jumping to shifted.
  auto mismatch = compare_function(object, symbol_named(object, "tail_bump"), binary,
                                   symbol_named(binary, "tail_nudge"));
  ASSERT_TRUE(mismatch);
  EXPECT_THAT(mismatch->what, HasSubstr("jump target: rebuild jumps to scaled, binary jumps to 0x"));
  EXPECT_THAT(mismatch->what, HasSubstr("(shifted)"));
}

TEST(FidelityCheck, ShortConditionalTailCallToAnotherFunctionIsRefused) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-branch.o");
  Instruction jne = branch_in(instructions_of(binary, "branch_pick"), 8, 0x75);
  ElfFile tampered = short_branch_to(binary, jne, symbol_named(binary, "branch_even").value);

  auto mismatches = check_functions(object, tampered, {"branch_pick"});
  ASSERT_EQ(mismatches.size(), 1u);
  EXPECT_THAT(mismatches[0].what, HasSubstr("jump target: rebuild jumps to branch_odd, binary jumps to 0x"));
  EXPECT_THAT(mismatches[0].what, HasSubstr("(branch_even)"));
}

TEST(FidelityCheck, ShortBranchOfAnotherConditionIsRefused) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-branch.o");
  Instruction jne = branch_in(instructions_of(binary, "branch_pick"), 8, 0x75);
  // jne made je, and made jmp: the same target, not the same instruction.
  for (uint8_t opcode : {uint8_t{0x74}, uint8_t{0xeb}}) {
    ElfFile tampered = patched(binary, jne.address, {opcode});
    auto mismatches = check_functions(object, tampered, {"branch_pick"});
    ASSERT_EQ(mismatches.size(), 1u) << int(opcode);
    EXPECT_THAT(mismatches[0].what, StartsWith("instruction #1 "));
    char binary_bytes[32];
    std::snprintf(binary_bytes, sizeof binary_bytes, "%02x %02x in the binary", opcode,
                  unsigned(binary.bytes_at_vaddr(jne.address + 1, 1)[0]));
    EXPECT_THAT(mismatches[0].what, HasSubstr(std::string("0f 85 00 00 00 00 in the rebuild, ") + binary_bytes));
  }
}

TEST(FidelityCheck, ShortenedBranchInsideTheFunctionToAnotherInstructionIsRefused) {
  ElfFile binary = fixture("fid-branch");
  ElfFile object = fixture("pie-fid-branch.o");
  for (const char* function : {"branch_cross", "branch_skip"}) {
    auto all = instructions_of(binary, function);
    Instruction branch = branch_in(all, 8, function == std::string("branch_cross") ? 0x74 : 0xeb);
    // To the tail call before the ret it goes to.
    ElfFile tampered = short_branch_to(binary, branch, all[all.size() - 2].address);
    auto mismatches = check_functions(object, tampered, {function});
    ASSERT_EQ(mismatches.size(), 1u) << function;
    EXPECT_THAT(mismatches[0].what, HasSubstr("rebuild goes to instruction #")) << function;
    EXPECT_THAT(mismatches[0].what, HasSubstr("binary to instruction #")) << function;
  }
}

}  // namespace
}  // namespace suture::build::fidelity
