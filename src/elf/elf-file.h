// A read-only model of one ELF file (executable, shared library or relocatable
// patch object), built on elfutils' libelf. Every table is read and bounds-checked
// once, up front, so later stages can index freely: a hostile file fails here,
// with a message that names the file and the part that is wrong.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace suture::elf {

struct Section {
  size_t index = 0;
  std::string name;
  uint32_t type = 0;  // SHT_*
  uint64_t flags = 0; // SHF_*
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
  uint64_t align = 0;
  uint64_t entsize = 0;
  uint32_t link = 0;
  uint32_t info = 0;
};

struct Symbol {
  size_t index = 0;
  std::string name;
  uint64_t value = 0;
  uint64_t size = 0;
  uint8_t type = 0;        // STT_*
  uint8_t bind = 0;        // STB_*
  uint8_t visibility = 0;  // STV_*
  uint16_t shndx = 0;      // SHN_UNDEF, SHN_ABS, SHN_COMMON or a section index
  // For STB_LOCAL symbols of .symtab: the name of the STT_FILE symbol that
  // precedes them (the source file they were compiled from), else empty.
  std::string file;
  // For .dynsym of shared objects: the version name ("GLIBC_2.2.5"), empty if none.
  std::string version;
  // False for hidden versions (sym@VER, not the default sym@@VER).
  bool default_version = true;

  bool defined() const { return shndx != 0; }  // SHN_UNDEF == 0
};

struct Relocation {
  uint64_t offset = 0;  // within the section it applies to
  uint32_t type = 0;    // R_X86_64_*
  uint32_t symbol = 0;  // index into symbols()
  int64_t addend = 0;
};

struct Segment {
  uint32_t type = 0;   // PT_*
  uint32_t flags = 0;  // PF_*
  uint64_t offset = 0;
  uint64_t vaddr = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint64_t align = 0;
};

class ElfFile {
 public:
  // Reads a file from disk. Throws Error("PATH: what is wrong").
  static ElfFile open(const std::string& path);
  // Parses bytes already in memory; `name` is used in messages. Throws Error.
  static ElfFile parse(std::vector<uint8_t> bytes, std::string name);

  ElfFile(ElfFile&&) noexcept;
  ElfFile& operator=(ElfFile&&) noexcept;
  ~ElfFile();

  const std::string& name() const;
  uint16_t type() const;     // ET_EXEC, ET_DYN, ET_REL
  uint16_t machine() const;  // EM_X86_64 for everything we accept
  std::span<const uint8_t> bytes() const;

  // Hex string of NT_GNU_BUILD_ID, or empty.
  const std::string& build_id() const;
  // DT_SONAME, or empty.
  const std::string& soname() const;
  // DT_NEEDED entries in order.
  const std::vector<std::string>& needed() const;

  const std::vector<Section>& sections() const;
  const Section* find_section(std::string_view name) const;
  // Contents of a section (empty for SHT_NOBITS). Bounds were checked on load.
  std::span<const uint8_t> section_bytes(const Section& section) const;

  // .symtab (entry 0 included), with `file` filled in for locals.
  const std::vector<Symbol>& symbols() const;
  // .dynsym (entry 0 included), with versions.
  const std::vector<Symbol>& dynamic_symbols() const;
  // The relocations (SHT_RELA) that apply to `target`; symbol indexes refer to
  // symbols() and were checked on load, as was that each one's bytes lie inside
  // `target`. Only relocatable objects (ET_REL) carry these; for executables and
  // shared objects the list is always empty (their dynamic relocations are the
  // dynamic linker's business, not ours), and so it is for compressed (-gz)
  // debug sections, whose relocations refer to bytes section_bytes() does not give.
  const std::vector<Relocation>& relocations_for(const Section& target) const;

  const std::vector<Segment>& segments() const;
  // PT_TLS, if any.
  std::optional<Segment> tls_segment() const;
  // File bytes backing [vaddr, vaddr + size) of a loadable segment, or empty if
  // not entirely file-backed.
  std::span<const uint8_t> bytes_at_vaddr(uint64_t vaddr, uint64_t size) const;

 private:
  struct Impl;
  explicit ElfFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// How many bytes of the section a relocation of `type` (R_X86_64_*) reads and
// writes; nullopt for a type the x86-64 psABI does not define.
std::optional<unsigned> relocation_width(uint32_t type);

// For a stripped binary: the separate debug file that carries its .symtab
// (/usr/lib/debug/.build-id/xx/yyyy.debug, or .gnu_debuglink), if installed.
std::optional<std::string> find_debug_file(const ElfFile& file, const std::string& path);

}  // namespace suture::elf
