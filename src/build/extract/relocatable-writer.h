// A small writer of x86-64 relocatable ELF objects (ET_REL): sections with their
// bytes, one symbol table, and RELA relocations that name symbols by handle.
//
// Why our own writer rather than libelf's elf_update(): we build every table from
// scratch, and libelf would still leave us to lay out the symbol table (locals
// first, sh_info = first global), the string tables, the section links and the
// relocation entries; what it adds is layout of offsets, which is twenty lines
// here. Writing the bytes ourselves keeps the output deterministic and the whole
// format in view in one file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace suture::build::extract {

struct OutRelocation {
  uint64_t offset = 0;
  uint32_t type = 0;    // R_X86_64_*
  size_t symbol = 0;    // handle from RelocatableWriter::add_symbol; 0 = no symbol
  int64_t addend = 0;
};

struct OutSection {
  std::string name;
  uint32_t type = 0;  // SHT_PROGBITS, SHT_NOBITS, ...
  uint64_t flags = 0;
  uint64_t align = 1;
  uint64_t entsize = 0;
  uint64_t size = 0;           // for SHT_NOBITS; otherwise bytes.size()
  std::vector<uint8_t> bytes;  // empty for SHT_NOBITS
  std::vector<OutRelocation> relocations;
};

struct OutSymbol {
  std::string name;
  uint8_t type = 0;  // STT_*
  uint8_t bind = 0;  // STB_*
  uint8_t visibility = 0;
  uint16_t shndx = 0;  // ELF section index of the output (see add_section), SHN_UNDEF or SHN_ABS
  uint64_t value = 0;
  uint64_t size = 0;
};

class RelocatableWriter {
 public:
  RelocatableWriter();  // handle 0 is the null symbol

  // Returns the section's index in the output object (1, 2, ...): content
  // sections come first, in the order they were added.
  uint16_t add_section(OutSection section);
  OutSection& section(uint16_t index) { return sections_.at(index - 1u); }
  // Returns a handle; the final symbol table puts locals before globals, so
  // handles are not symbol indexes.
  size_t add_symbol(OutSymbol symbol);
  const OutSymbol& symbol(size_t handle) const { return symbols_.at(handle); }

  // The whole object file. Sections after the content: .rela.* for each section
  // with relocations, .note.GNU-stack (no executable stack), .symtab, .strtab,
  // .shstrtab.
  std::vector<uint8_t> write() const;

 private:
  std::vector<OutSection> sections_;
  std::vector<OutSymbol> symbols_;
};

}  // namespace suture::build::extract
