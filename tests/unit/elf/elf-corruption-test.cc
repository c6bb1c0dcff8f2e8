// Hostile ELF files: a valid object with one field broken at a time must be
// rejected with a message that names the file and the broken part, and random
// damage must never get past parse() as anything but suture::Error.
#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "common/error.h"
#include "elf/elf-file.h"

namespace suture::elf {
namespace {

constexpr const char* name = "broken.o";

class ElfCorruption : public testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(RELOCATIONS_OBJECT, std::ios::binary);
    bytes_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    ASSERT_GT(bytes_.size(), sizeof(Elf64_Ehdr));
    model_ = std::make_unique<ElfFile>(ElfFile::parse(bytes_, name));
  }

  Elf64_Ehdr header() const {
    Elf64_Ehdr header;
    std::memcpy(&header, bytes_.data(), sizeof header);
    return header;
  }
  void set_header(const Elf64_Ehdr& header) { std::memcpy(bytes_.data(), &header, sizeof header); }

  size_t section_header_at(std::string_view section) const {
    const Section* found = model_->find_section(section);
    EXPECT_NE(found, nullptr) << section;
    return header().e_shoff + found->index * sizeof(Elf64_Shdr);
  }
  Elf64_Shdr section_header(std::string_view section) const {
    Elf64_Shdr header;
    std::memcpy(&header, bytes_.data() + section_header_at(section), sizeof header);
    return header;
  }
  void set_section_header(std::string_view section, const Elf64_Shdr& header) {
    std::memcpy(bytes_.data() + section_header_at(section), &header, sizeof header);
  }

  // Byte offset of entry `index` of a table section.
  size_t entry_at(std::string_view section, size_t index, size_t entry_size) const {
    return model_->find_section(section)->offset + index * entry_size;
  }

  // Parsing must fail with "broken.o: <expected...>".
  void expect_rejected(std::string_view expected) const {
    try {
      ElfFile::parse(bytes_, name);
      ADD_FAILURE() << "accepted; expected: " << expected;
    } catch (const Error& error) {
      std::string message = error.what();
      EXPECT_EQ(message.rfind(std::string(name) + ": ", 0), 0u) << message;
      EXPECT_NE(message.find(expected), std::string::npos)
          << "message: " << message << "\nexpected: " << expected;
    }
  }

  std::vector<uint8_t> bytes_;
  std::unique_ptr<ElfFile> model_;
};

TEST_F(ElfCorruption, NotElfAtAll) {
  bytes_ = {'h', 'e', 'l', 'l', 'o'};
  expect_rejected("not an ELF file");
  bytes_.clear();
  expect_rejected("not an ELF file");
}

TEST_F(ElfCorruption, WrongClassByteOrderOrMachine) {
  auto original = bytes_;
  bytes_[EI_CLASS] = ELFCLASS32;
  expect_rejected("not a 64-bit ELF file");
  bytes_ = original;
  bytes_[EI_DATA] = ELFDATA2MSB;
  expect_rejected("not a little-endian ELF file");
  bytes_ = original;
  auto h = header();
  h.e_machine = EM_AARCH64;
  set_header(h);
  expect_rejected("machine 183 is not x86-64");
  bytes_ = original;
  h = header();
  h.e_type = ET_CORE;
  set_header(h);
  expect_rejected("ELF type 4 is not supported");
}

TEST_F(ElfCorruption, SectionHeaderTableOutsideTheFile) {
  auto h = header();
  h.e_shoff = bytes_.size() + 100;
  set_header(h);
  expect_rejected("section header table at offset");

  h.e_shoff = bytes_.size() - sizeof(Elf64_Shdr);  // the first fits, the rest does not
  set_header(h);
  expect_rejected("runs past the end of the file");

  h = header();
  h.e_shoff = 0;
  set_header(h);
  expect_rejected("no section header table");
}

TEST_F(ElfCorruption, SectionNameTableIndex) {
  auto h = header();
  h.e_shstrndx = h.e_shnum + 3;
  set_header(h);
  expect_rejected("section name table index");

  h.e_shstrndx = static_cast<uint16_t>(model_->find_section(".text")->index);
  set_header(h);
  expect_rejected("is not a string table");
}

TEST_F(ElfCorruption, SectionContentsOutsideTheFile) {
  auto original = bytes_;
  auto text = section_header(".text");
  text.sh_offset = bytes_.size();
  set_section_header(".text", text);
  expect_rejected("section .text: contents (offset");

  bytes_ = original;
  text = section_header(".text");
  text.sh_size = ~uint64_t{0} - 10;  // offset + size overflows
  set_section_header(".text", text);
  expect_rejected("section .text: contents (offset");

  // .bss has no contents, so any offset is fine there.
  bytes_ = original;
  auto bss = section_header(".bss");
  bss.sh_offset = ~uint64_t{0};
  set_section_header(".bss", bss);
  EXPECT_NO_THROW(ElfFile::parse(bytes_, name));
}

TEST_F(ElfCorruption, SectionName) {
  auto text = section_header(".text");
  text.sh_name = 1u << 30;
  set_section_header(".text", text);
  expect_rejected("name offset 0x40000000 is outside the section name table");
}

TEST_F(ElfCorruption, SectionLinks) {
  auto original = bytes_;
  auto symtab = section_header(".symtab");
  symtab.sh_link = 999;
  set_section_header(".symtab", symtab);
  expect_rejected("section .symtab: sh_link 999 out of range");

  bytes_ = original;
  symtab.sh_link = static_cast<uint32_t>(model_->find_section(".text")->index);
  set_section_header(".symtab", symtab);
  expect_rejected("section .symtab: sh_link " + std::to_string(symtab.sh_link) +
                  " does not name a string table");

  bytes_ = original;
  auto rela = section_header(".rela.text");
  rela.sh_link = static_cast<uint32_t>(model_->find_section(".text")->index);
  set_section_header(".rela.text", rela);
  expect_rejected("section .rela.text: sh_link");

  bytes_ = original;
  rela = section_header(".rela.text");
  rela.sh_info = 500;
  set_section_header(".rela.text", rela);
  expect_rejected("section .rela.text: sh_info 500 does not name a section");

  bytes_ = original;
  rela = section_header(".rela.text");
  rela.sh_info = static_cast<uint32_t>(model_->find_section(".bss")->index);
  set_section_header(".rela.text", rela);
  expect_rejected("section .rela.text: applies to section .bss, which has no contents");
}

TEST_F(ElfCorruption, SymbolTableShape) {
  auto original = bytes_;
  auto symtab = section_header(".symtab");
  symtab.sh_entsize = 16;
  set_section_header(".symtab", symtab);
  expect_rejected("section .symtab: entry size 16");

  bytes_ = original;
  symtab = section_header(".symtab");
  symtab.sh_size -= 1;
  set_section_header(".symtab", symtab);
  expect_rejected("section .symtab: size");
}

TEST_F(ElfCorruption, SymbolFields) {
  auto original = bytes_;
  size_t last = model_->symbols().size() - 1;
  size_t at = entry_at(".symtab", last, sizeof(Elf64_Sym));
  Elf64_Sym symbol;
  std::memcpy(&symbol, bytes_.data() + at, sizeof symbol);
  std::string label =
      "section .symtab: symbol " + std::to_string(last) + " '" + model_->symbols()[last].name + "': ";

  Elf64_Sym broken = symbol;
  broken.st_shndx = 200;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected(label + "section index 200 out of range");

  broken = symbol;
  broken.st_shndx = SHN_XINDEX;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected(label + "extended section indexes");

  broken = symbol;
  broken.st_shndx = 0xff02;  // SHN_X86_64_LCOMMON
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected(label + "special section index 0xff02");

  broken = symbol;
  broken.st_name = 1u << 20;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected("section .symtab: symbol " + std::to_string(last) +
                  ": name offset 0x100000 is outside section .strtab");

  bytes_ = original;
  broken = symbol;
  broken.st_shndx = SHN_ABS;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  EXPECT_NO_THROW(ElfFile::parse(bytes_, name));
}

TEST_F(ElfCorruption, StringTableWithoutTerminator) {
  // Overwrite the NUL that ends the last name in .strtab.
  const Section* strtab = model_->find_section(".strtab");
  ASSERT_NE(strtab, nullptr);
  bytes_[strtab->offset + strtab->size - 1] = 'x';
  expect_rejected("is outside section .strtab");
}

TEST_F(ElfCorruption, RelocationSymbolIndex) {
  size_t at = entry_at(".rela.text", 1, sizeof(Elf64_Rela));
  Elf64_Rela rela;
  std::memcpy(&rela, bytes_.data() + at, sizeof rela);
  rela.r_info = ELF64_R_INFO(99, ELF64_R_TYPE(rela.r_info));
  std::memcpy(bytes_.data() + at, &rela, sizeof rela);
  expect_rejected("section .rela.text: relocation 1: symbol index 99 out of range (" +
                  std::to_string(model_->symbols().size()) + " symbols)");
}

TEST_F(ElfCorruption, RelocationOffsetAndType) {
  auto original = bytes_;
  size_t at = entry_at(".rela.text", 0, sizeof(Elf64_Rela));
  Elf64_Rela rela;
  std::memcpy(&rela, bytes_.data() + at, sizeof rela);
  uint64_t text_size = model_->find_section(".text")->size;

  // A 4-byte field may end exactly at the end of the section (a tail call's rel32)...
  Elf64_Rela broken = rela;
  broken.r_offset = text_size - 4;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  EXPECT_NO_THROW(ElfFile::parse(bytes_, name));

  // ...but not one byte further.
  broken.r_offset = text_size - 3;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected("section .rela.text: relocation 0: 4 bytes at offset");

  broken.r_offset = ~uint64_t{0} - 1;
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected("lie outside section .text");

  // An 8-byte field in the last 4 bytes.
  broken.r_offset = text_size - 4;
  broken.r_info = ELF64_R_INFO(ELF64_R_SYM(rela.r_info), R_X86_64_64);
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected("relocation 0: 8 bytes at offset");

  broken = rela;
  broken.r_info = ELF64_R_INFO(ELF64_R_SYM(rela.r_info), 200);
  std::memcpy(bytes_.data() + at, &broken, sizeof broken);
  expect_rejected("section .rela.text: relocation 0: unknown type 200");
}

TEST_F(ElfCorruption, RelRelocationsAreRefused) {
  auto rela = section_header(".rela.text");
  rela.sh_type = SHT_REL;
  set_section_header(".rela.text", rela);
  expect_rejected("section .rela.text: REL relocations are not supported");
}

TEST_F(ElfCorruption, SecondSymbolTable) {
  auto strtab = section_header(".strtab");
  auto symtab = section_header(".symtab");
  strtab = symtab;  // .strtab becomes a second copy of .symtab
  set_section_header(".strtab", strtab);
  expect_rejected("a second symbol table");
}

TEST_F(ElfCorruption, EveryTruncationFailsCleanly) {
  auto original = bytes_;
  for (size_t size = 0; size < original.size(); ++size) {
    std::vector<uint8_t> prefix(original.begin(), original.begin() + static_cast<long>(size));
    try {
      ElfFile::parse(std::move(prefix), name);
    } catch (const Error&) {
    }
  }
}

// Random damage, concentrated on the headers and tables where the interesting
// checks live. Anything but a clean parse or suture::Error fails the test (and a
// crash fails it loudly).
TEST_F(ElfCorruption, RandomDamageNeverEscapes) {
  std::mt19937_64 random(20240611);
  const auto original = bytes_;
  std::vector<std::pair<size_t, size_t>> hot;  // [offset, size) ranges worth hitting
  hot.emplace_back(0, sizeof(Elf64_Ehdr));
  hot.emplace_back(header().e_shoff, header().e_shnum * sizeof(Elf64_Shdr));
  for (const char* table : {".symtab", ".rela.text", ".rela.eh_frame", ".strtab", ".shstrtab"}) {
    const Section* section = model_->find_section(table);
    hot.emplace_back(section->offset, section->size);
  }
  const uint64_t interesting[] = {0,
                                  1,
                                  0xff,
                                  0xffff,
                                  0xff00,
                                  0xfff1,
                                  0xffff'ffff,
                                  ~uint64_t{0},
                                  original.size(),
                                  original.size() - 1,
                                  original.size() + 1,
                                  1ull << 63};
  size_t accepted = 0;
  for (int round = 0; round < 5000; ++round) {
    auto bytes = original;
    int changes = 1 + static_cast<int>(random() % 3);
    for (int c = 0; c < changes; ++c) {
      auto [start, length] = hot[random() % hot.size()];
      size_t at = start + random() % length;
      switch (random() % 3) {
        case 0:
          bytes[at] ^= static_cast<uint8_t>(1u << (random() % 8));
          break;
        case 1:
          bytes[at] = static_cast<uint8_t>(random());
          break;
        default: {
          uint64_t value = interesting[random() % std::size(interesting)];
          size_t width = size_t{1} << (random() % 4);
          for (size_t i = 0; i < width && at + i < bytes.size(); ++i) {
            bytes[at + i] = static_cast<uint8_t>(value >> (8 * i));
          }
        }
      }
    }
    try {
      auto file = ElfFile::parse(std::move(bytes), name);
      ++accepted;
      // What was accepted must be safe to walk.
      for (const Section& section : file.sections()) {
        for (const Relocation& relocation : file.relocations_for(section)) {
          ASSERT_LT(relocation.symbol, file.symbols().size());
        }
        (void)file.section_bytes(section);
      }
    } catch (const Error&) {
    }
  }
  std::printf("random damage: %zu of 5000 still parse\n", accepted);
}

}  // namespace
}  // namespace suture::elf
