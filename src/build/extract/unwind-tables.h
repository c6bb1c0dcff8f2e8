// The part of extraction that carries unwind information along: from the patched
// object's .eh_frame, the CIEs and FDEs of the code the patch brings, so that a
// C++ exception (or any unwinder) can cross frames of patch code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "elf/elf-file.h"

namespace suture::build::extract {

struct KeptUnwindTables {
  // The kept records in their original order, each CIE pointer rewritten for
  // the new offsets; no terminator (the final link adds it). Empty if no FDE
  // describes kept code.
  std::vector<uint8_t> bytes;
  // The original relocations of the kept records, at their offsets in `bytes`.
  std::vector<elf::Relocation> relocations;
  // Sections the kept records refer to other than the code they describe:
  // LSDAs (.gcc_except_table*) and personality pointers (DW.ref.*).
  std::vector<size_t> referenced_sections;
};

// `eh_frame` is a section of `object`; `code_kept(index)` tells whether the code
// section with that index comes along. Throws Error("OBJECT: .eh_frame+0x40:
// what is wrong") for records it cannot read: 64-bit lengths, records that
// overrun the section, an FDE whose CIE pointer leads nowhere or whose start has
// no relocation.
KeptUnwindTables keep_unwind_tables(const elf::ElfFile& object, const elf::Section& eh_frame,
                                    const std::function<bool(size_t)>& code_kept);

}  // namespace suture::build::extract
