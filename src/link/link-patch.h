// Linking a patch object into the target's address space, in a local working copy
// that knows its final addresses (written to the target later, in one go).
//
// The patch region has three parts, each page aligned, each mapped with its own
// protection (never writable and executable at once):
//   text    r-x  the object's executable sections, then stubs for calls to far
//                functions (jmp *slot(%rip))
//   rodata  r--  read-only sections (and .data.rel.ro*, and the DW.ref.*
//                personality pointers, which need no writes once linked), then
//                the .eh_frame sections back to back with a zero terminator,
//                then the table of far references: GOT slots, stub slots, TLS
//                module/offset pairs
//   data    rw-  writable sections, .bss zero-filled, then a zeroed block for
//                the unwinder's bookkeeping of the patch's unwind tables
// Sections named .suture.* (metadata), .note.*, .comment and other
// non-allocated sections are not placed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "elf/elf-file.h"
#include "link/target-symbols.h"

namespace suture::link {

// Room in the data part for what registering the patch's unwind tables with the
// target's unwinder needs (engine/unwind-registration.h): libgcc's `struct
// object` (48 bytes in gcc 12) and a null-terminated list of tables.
inline constexpr uint64_t kUnwindBlockSize = 256;

struct PartSizes {
  uint64_t text = 0, rodata = 0, data = 0;  // each rounded up to the page size
  uint64_t total() const { return text + rodata + data; }
};

struct Placement {
  RemoteAddr text, rodata, data;
};

struct LinkedPatch {
  Placement placement;
  PartSizes sizes;
  std::vector<uint8_t> text, rodata, data;  // exactly sizes.* bytes each
  // Every symbol the object defines (functions and objects), at its final address.
  std::map<std::string, RemoteAddr> defined;
  // Target symbols the patch refers to (name -> where it resolved), for records
  // and for dependency checks between stacked patches.
  std::map<std::string, RemoteAddr> imports;
  // The object's .eh_frame, relocated and terminated by a zero length word, in
  // rodata (empty when the object has no unwind information), and the zeroed
  // block of kUnwindBlockSize bytes in data.
  RemoteRange eh_frame;
  RemoteRange unwind_block;
};

// Upper bound of the space a patch needs (depends on the object only).
PartSizes measure(const elf::ElfFile& object);

// Links `object` for objects()[patched] at `placement`. `bindings` maps an
// undefined symbol of the object to (target symbol, source file). Throws Error:
// "fix.o: .text.f+0x12: R_X86_64_PC32 against 'x': target out of range"; or
// "fix.o: undefined symbol 'x'" when resolution fails.
LinkedPatch link_patch(const elf::ElfFile& object, const TargetSymbols& symbols, size_t patched,
                       const std::map<std::string, std::pair<std::string, std::string>>& bindings,
                       const Placement& placement);

}  // namespace suture::link
