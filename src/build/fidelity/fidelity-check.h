// The fidelity check of `suture build`: before a patch is written, every
// function it replaces must be, as the original rebuild compiled it, the same
// code as in the binary that will be patched. A patch built from other sources,
// another compiler or other flags is refused here, naming the function and the
// first difference.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "elf/elf-file.h"

namespace suture::build::fidelity {

struct Mismatch {
  std::string function;
  uint64_t offset = 0;  // from the function's start
  // What differs, e.g. "byte 0x48 in the rebuild, 0x4c in the binary",
  // "call target: rebuild calls foo, binary calls 0x1234 (bar)",
  // "size 120 in the rebuild, 118 in the binary", "not found in the binary".
  std::string what;
};

// Compares `function` (a symbol of the relocatable `object`, compiled with
// -ffunction-sections) with `in_binary` (a symbol of the linked executable or
// shared object `binary`): sizes equal, bytes equal outside relocated fields,
// and every relocated field of the binary pointing at what the relocation names;
// or, failing that, the same instructions once the assembler's alignment
// padding is left out of both. nullopt when they are the same code.
std::optional<Mismatch> compare_function(const elf::ElfFile& object, const elf::Symbol& function,
                                         const elf::ElfFile& binary, const elf::Symbol& in_binary);

// Finds each named function in `object` and in `binary` (a local by name and
// source file when the name alone is ambiguous) and compares them; one Mismatch
// per function that is not the same code, in the order of `names`.
std::vector<Mismatch> check_functions(const elf::ElfFile& object, const elf::ElfFile& binary,
                                      const std::vector<std::string>& names);

}  // namespace suture::build::fidelity
