// libFuzzer entry point for the ELF model alone: whatever ElfFile::parse accepts
// must be safe to walk with the indexes it hands out.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "common/error.h"
#include "elf/elf-file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = suture::elf::ElfFile::parse(std::vector<uint8_t>(data, data + size), "fuzz.o");
    for (const auto& section : file.sections()) {
      auto bytes = file.section_bytes(section);
      if (bytes.data() && (bytes.data() < file.bytes().data() ||
                           bytes.data() + bytes.size() > file.bytes().data() + file.bytes().size())) {
        abort();
      }
      for (const auto& relocation : file.relocations_for(section)) {
        if (relocation.symbol >= file.symbols().size()) abort();
      }
    }
    for (const auto& symbol : file.symbols()) {
      if (symbol.shndx < 0xff00 && symbol.shndx >= file.sections().size()) abort();
    }
    for (const auto& segment : file.segments()) (void)file.bytes_at_vaddr(segment.vaddr, segment.filesz);
  } catch (const suture::Error&) {
  }
  return 0;
}
