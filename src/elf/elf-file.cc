// Reading an ELF file into a plain, fully checked model.
//
// The problem: every later stage wants to index sections, symbols and relocations
// without a bounds check at each step, yet the files come from anywhere. A patch
// file handed to `suture apply` is as trustworthy as a fuzzer's output, and libelf
// only promises that the bytes it hands back exist: a symbol's section index, a
// relocation's symbol index or a string offset are the caller's problem.
//
// The approach: one pass in dependency order (ELF header, section headers and
// names, symbol tables, symbol versions, relocations, segments, dynamic section,
// notes). Each step checks what it reads before storing it and copies it into the
// plain structs of elf-file.h; the libelf handle is closed when the pass ends.
// Once parse() returns, every index in the model names something that exists and
// every offset lies inside the bytes, so a defect is reported here, with the
// file's name, instead of in whichever stage happens to touch it first.
//
// The ELF header is checked by hand before libelf sees the image, so libelf only
// ever walks header tables that fit in the buffer. Notes and symbol-version tables
// are small linked structures that are simpler to walk with explicit bounds than
// through libelf's typed accessors, so they are read straight from the bytes.
//
// Rejected: keeping libelf's handle (or a mapping) and reading lazily. That is
// cheaper for a huge debug file, but defects would then surface far from the
// file's name, and a half-checked model is exactly what we want to avoid.
#include "elf/elf-file.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <unordered_map>

#include "common/error.h"
#include "common/read-file.h"

namespace suture::elf {

namespace {

// Everything the model holds; ElfFile::Impl is just this (Impl is private, and the
// reader below needs to name the type).
struct Model {
  std::string name;
  std::vector<uint8_t> bytes;
  uint16_t type = 0;
  uint16_t machine = 0;
  std::string build_id;
  std::string soname;
  std::vector<std::string> needed;
  std::vector<Section> sections;
  std::unordered_map<std::string_view, size_t> section_by_name;  // first of each name
  std::vector<Symbol> symbols;
  std::vector<Symbol> dynamic_symbols;
  std::vector<std::vector<Relocation>> relocations;  // by the index of the target section
  std::vector<Segment> segments;
};

struct ElfCloser {
  void operator()(Elf* elf) const { elf_end(elf); }
};
using ElfHandle = std::unique_ptr<Elf, ElfCloser>;

// What the hand check of the ELF header found out, for the libelf pass to confirm.
struct HeaderFacts {
  size_t section_count = 0;
  size_t section_names = 0;  // index of the section name table, 0 if none
  size_t segment_count = 0;
};

std::span<const uint8_t> file_range(const std::vector<uint8_t>& bytes, uint64_t offset, uint64_t size) {
  if (offset > bytes.size() || bytes.size() - offset < size) return {};
  return {bytes.data() + offset, size};
}

bool fits(const std::vector<uint8_t>& bytes, uint64_t offset, uint64_t size) {
  return offset <= bytes.size() && bytes.size() - offset >= size;
}

// File bytes behind [vaddr, vaddr + size) of one PT_LOAD segment, or empty.
std::span<const uint8_t> loaded_bytes(const Model& model, uint64_t vaddr, uint64_t size) {
  for (const Segment& segment : model.segments) {
    if (segment.type != PT_LOAD || vaddr < segment.vaddr) continue;
    uint64_t into = vaddr - segment.vaddr;
    if (into > segment.filesz || segment.filesz - into < size) continue;
    if (segment.offset > model.bytes.size() || into > model.bytes.size() - segment.offset) continue;
    return file_range(model.bytes, segment.offset + into, size);
  }
  return {};
}

template <typename T>
T load(std::span<const uint8_t> bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

class Reader {
 public:
  explicit Reader(Model& model) : m_(model) {}

  void read() {
    HeaderFacts facts = check_header();
    static const bool libelf_ready = elf_version(EV_CURRENT) != EV_NONE;
    if (!libelf_ready) bad("libelf refuses to work: {}", elf_errmsg(-1));
    // elf_memory() reads the image in place as read-only memory (no conversion is
    // needed for our own byte order); the cast only satisfies its C interface.
    elf_.reset(elf_memory(reinterpret_cast<char*>(m_.bytes.data()), m_.bytes.size()));
    if (!elf_ || elf_kind(elf_.get()) != ELF_K_ELF) bad("libelf cannot read it: {}", elf_errmsg(-1));

    read_sections(facts);
    read_symbol_tables();
    if (m_.type == ET_DYN || m_.type == ET_EXEC) read_versions();
    if (m_.type == ET_REL) read_relocations();
    read_segments(facts);
    read_dynamic();
    read_build_id();
    elf_.reset();
  }

 private:
  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> format, Args&&... args) const {
    throw Error(fmt::format("{}: {}", m_.name, fmt::format(format, std::forward<Args>(args)...)));
  }

  std::string label(const Section& section) const {
    if (section.name.empty()) return fmt::format("section [{}]", section.index);
    return fmt::format("section {}", section.name);
  }

  std::span<const uint8_t> contents(const Section& section) const {
    if (section.type == SHT_NOBITS || section.type == SHT_NULL) return {};
    return file_range(m_.bytes, section.offset, section.size);
  }

  // The NUL-terminated string at `offset` of a string table, or nullopt if it
  // starts or runs outside the table.
  std::optional<std::string_view> string_at(const Section& table, uint64_t offset) const {
    auto bytes = contents(table);
    if (offset >= bytes.size()) return std::nullopt;
    auto* start = bytes.data() + offset;
    auto* end = static_cast<const uint8_t*>(std::memchr(start, 0, bytes.size() - offset));
    if (!end) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(start), static_cast<size_t>(end - start));
  }

  const Section& string_table_linked_from(const Section& section) const {
    const Section& table = m_.sections[section.link];  // sh_link was range-checked
    if (table.type != SHT_STRTAB) {
      bad("{}: sh_link {} does not name a string table", label(section), section.link);
    }
    return table;
  }

  Elf_Data* data_of(const Section& section) const {
    Elf_Data* data = elf_getdata(elf_getscn(elf_.get(), section.index), nullptr);
    if (!data || data->d_size != section.size) {
      bad("{}: libelf cannot read its contents: {}", label(section), elf_errmsg(-1));
    }
    return data;
  }

  // The ELF header, by hand: identity, machine, and that both header tables lie
  // inside the file. Extended counts (e_shnum == 0, e_shstrndx == SHN_XINDEX,
  // e_phnum == PN_XNUM) live in section header 0.
  HeaderFacts check_header() {
    const auto& bytes = m_.bytes;
    if (bytes.size() < SELFMAG || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) bad("not an ELF file");
    if (bytes.size() < sizeof(Elf64_Ehdr)) bad("truncated ELF header ({} bytes)", bytes.size());
    if (bytes[EI_CLASS] != ELFCLASS64) bad("not a 64-bit ELF file (only x86-64 is supported)");
    if (bytes[EI_DATA] != ELFDATA2LSB) bad("not a little-endian ELF file (only x86-64 is supported)");
    if (bytes[EI_VERSION] != EV_CURRENT) bad("unknown ELF version {}", bytes[EI_VERSION]);

    auto header = load<Elf64_Ehdr>(bytes, 0);
    m_.type = header.e_type;
    m_.machine = header.e_machine;
    if (header.e_machine != EM_X86_64) bad("machine {} is not x86-64 ({})", header.e_machine, EM_X86_64);
    if (header.e_type != ET_REL && header.e_type != ET_EXEC && header.e_type != ET_DYN) {
      bad("ELF type {} is not supported (only relocatable objects, executables and shared objects)",
          header.e_type);
    }

    HeaderFacts facts;
    Elf64_Shdr first{};
    if (header.e_shoff != 0) {
      if (header.e_shentsize != sizeof(Elf64_Shdr)) {
        bad("section header size {} (expected {})", header.e_shentsize, sizeof(Elf64_Shdr));
      }
      if (!fits(bytes, header.e_shoff, sizeof(Elf64_Shdr))) {
        bad("section header table at offset {:#x} lies outside the file ({} bytes)", header.e_shoff,
            bytes.size());
      }
      first = load<Elf64_Shdr>(bytes, header.e_shoff);
      facts.section_count = header.e_shnum != 0 ? header.e_shnum : first.sh_size;
      if (facts.section_count > (bytes.size() - header.e_shoff) / sizeof(Elf64_Shdr)) {
        bad("section header table ({} entries at offset {:#x}) runs past the end of the file ({} bytes)",
            facts.section_count, header.e_shoff, bytes.size());
      }
      facts.section_names = header.e_shstrndx == SHN_XINDEX ? first.sh_link : header.e_shstrndx;
      if (facts.section_names >= facts.section_count && facts.section_names != SHN_UNDEF) {
        bad("section name table index {} out of range ({} sections)", facts.section_names,
            facts.section_count);
      }
    } else if (header.e_shnum != 0) {
      bad("{} section headers but no section header table (e_shoff is 0)", header.e_shnum);
    }
    if (header.e_type == ET_REL && facts.section_count == 0) bad("relocatable object without sections");

    facts.segment_count = header.e_phnum;
    if (header.e_phnum == PN_XNUM) {
      if (header.e_shoff == 0) bad("e_phnum is PN_XNUM but there is no section header 0");
      facts.segment_count = first.sh_info;
    }
    if (facts.segment_count != 0) {
      if (header.e_phentsize != sizeof(Elf64_Phdr)) {
        bad("program header size {} (expected {})", header.e_phentsize, sizeof(Elf64_Phdr));
      }
      if (header.e_phoff > bytes.size() ||
          facts.segment_count > (bytes.size() - header.e_phoff) / sizeof(Elf64_Phdr)) {
        bad("program header table ({} entries at offset {:#x}) runs past the end of the file ({} bytes)",
            facts.segment_count, header.e_phoff, bytes.size());
      }
    }
    return facts;
  }

  void read_sections(const HeaderFacts& facts) {
    size_t count = 0;
    if (elf_getshdrnum(elf_.get(), &count) != 0 || count != facts.section_count) {
      bad("libelf disagrees about the number of sections ({}): {}", facts.section_count, elf_errmsg(-1));
    }
    m_.sections.reserve(count);
    std::vector<uint32_t> name_offsets(count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Shdr header;
      if (!gelf_getshdr(elf_getscn(elf_.get(), i), &header)) bad("section [{}]: {}", i, elf_errmsg(-1));
      name_offsets[i] = header.sh_name;
      Section& section = m_.sections.emplace_back();
      section.index = i;
      section.type = header.sh_type;
      section.flags = header.sh_flags;
      section.addr = header.sh_addr;
      section.offset = header.sh_offset;
      section.size = header.sh_size;
      section.align = header.sh_addralign;
      section.entsize = header.sh_entsize;
      section.link = header.sh_link;
      section.info = header.sh_info;
    }
    if (count == 0) return;
    // Section 0 is reserved; its fields may hold the extended counts read above.
    Section& reserved = m_.sections[0];
    reserved.type = SHT_NULL;
    reserved.flags = reserved.addr = reserved.offset = reserved.size = reserved.align = reserved.entsize = 0;
    reserved.link = reserved.info = 0;

    const Section* names = nullptr;
    if (facts.section_names != SHN_UNDEF) {
      names = &m_.sections[facts.section_names];
      if (names->type != SHT_STRTAB) bad("section name table [{}] is not a string table", names->index);
      if (!fits(m_.bytes, names->offset, names->size)) {
        bad("section name table [{}] (offset {:#x}, {} bytes) lies outside the file ({} bytes)", names->index,
            names->offset, names->size, m_.bytes.size());
      }
    }

    for (size_t i = 1; i < count; ++i) {
      Section& section = m_.sections[i];
      if (names) {
        auto name = string_at(*names, name_offsets[i]);
        if (!name) {
          bad("section [{}]: name offset {:#x} is outside the section name table", i, name_offsets[i]);
        }
        section.name = *name;
      } else if (name_offsets[i] != 0) {
        bad("section [{}] has a name but the file has no section name table", i);
      }
      if (section.type != SHT_NOBITS && section.type != SHT_NULL &&
          !fits(m_.bytes, section.offset, section.size)) {
        bad("{}: contents (offset {:#x}, {} bytes) lie outside the file ({} bytes)", label(section),
            section.offset, section.size, m_.bytes.size());
      }
      if (section.link >= count) {
        bad("{}: sh_link {} out of range ({} sections)", label(section), section.link, count);
      }
      if ((section.flags & SHF_COMPRESSED) && (section.flags & SHF_ALLOC)) {
        bad("{}: an allocated section cannot be compressed", label(section));
      }
      if (section.align & (section.align - 1)) {
        bad("{}: alignment {} is not a power of two", label(section), section.align);
      }
    }

    m_.section_by_name.reserve(count);
    for (const Section& section : m_.sections) {
      if (!section.name.empty()) m_.section_by_name.emplace(section.name, section.index);
    }
  }

  void read_symbol_tables() {
    const Section* symtab = nullptr;
    const Section* dynsym = nullptr;
    for (const Section& section : m_.sections) {
      const Section** slot = section.type == SHT_SYMTAB   ? &symtab
                             : section.type == SHT_DYNSYM ? &dynsym
                                                          : nullptr;
      if (!slot) continue;
      if (*slot) bad("{}: a second symbol table of its kind ({} came first)", label(section), label(**slot));
      *slot = &section;
    }
    if (symtab) read_symbols(*symtab, m_.symbols, true);
    if (dynsym) read_symbols(*dynsym, m_.dynamic_symbols, false);
    symtab_index_ = symtab ? symtab->index : 0;
    dynsym_index_ = dynsym ? dynsym->index : 0;
  }

  void read_symbols(const Section& table, std::vector<Symbol>& out, bool group_by_file) {
    if (table.entsize != sizeof(Elf64_Sym)) {
      bad("{}: entry size {} (expected {})", label(table), table.entsize, sizeof(Elf64_Sym));
    }
    if (table.size % sizeof(Elf64_Sym) != 0) {
      bad("{}: size {} is not a multiple of the entry size", label(table), table.size);
    }
    const Section& strings = string_table_linked_from(table);
    Elf_Data* data = data_of(table);
    size_t count = table.size / sizeof(Elf64_Sym);
    out.reserve(count);

    std::string_view file;
    for (size_t i = 0; i < count; ++i) {
      GElf_Sym raw;
      if (!gelf_getsym(data, static_cast<int>(i), &raw)) {
        bad("{}: symbol {}: {}", label(table), i, elf_errmsg(-1));
      }
      auto name = string_at(strings, raw.st_name);
      if (!name) {
        bad("{}: symbol {}: name offset {:#x} is outside {}", label(table), i, raw.st_name, label(strings));
      }
      Symbol& symbol = out.emplace_back();
      symbol.index = i;
      symbol.name = *name;
      symbol.value = raw.st_value;
      symbol.size = raw.st_size;
      symbol.type = GELF_ST_TYPE(raw.st_info);
      symbol.bind = GELF_ST_BIND(raw.st_info);
      symbol.visibility = GELF_ST_VISIBILITY(raw.st_other);
      symbol.shndx = raw.st_shndx;

      if (raw.st_shndx == SHN_XINDEX) {
        bad("{}: symbol {} '{}': extended section indexes (SHN_XINDEX) are not supported", label(table), i,
            *name);
      }
      if (raw.st_shndx >= SHN_LORESERVE) {
        if (raw.st_shndx != SHN_ABS && raw.st_shndx != SHN_COMMON) {
          bad("{}: symbol {} '{}': special section index {:#x} is not supported", label(table), i, *name,
              raw.st_shndx);
        }
      } else if (raw.st_shndx >= m_.sections.size()) {
        bad("{}: symbol {} '{}': section index {} out of range ({} sections)", label(table), i, *name,
            raw.st_shndx, m_.sections.size());
      }

      // Locals follow the STT_FILE symbol of the source file they came from;
      // linkers keep that order, which is what tells two `static int count` apart.
      if (group_by_file) {
        if (symbol.type == STT_FILE) {
          file = *name;
        } else if (symbol.bind == STB_LOCAL && i != 0) {
          symbol.file = file;
        }
      }
    }
  }

  // Version names by version index, from .gnu.version_d (definitions) and
  // .gnu.version_r (requirements); indexes are unique across both.
  void read_versions() {
    if (dynsym_index_ == 0) return;
    const Section* versym = nullptr;
    std::vector<std::string_view> names;  // data() == nullptr: index not defined
    auto define = [&](const Section& where, uint64_t index, std::string_view name) {
      if (index > 0x7fff) bad("{}: version index {} out of range", label(where), index);
      if (names.size() <= index) names.resize(index + 1);
      names[index] = name;
    };

    for (const Section& section : m_.sections) {
      if (section.type == SHT_GNU_versym && section.link == dynsym_index_) {
        versym = &section;
      } else if (section.type == SHT_GNU_verdef) {
        read_verdef(section, define);
      } else if (section.type == SHT_GNU_verneed) {
        read_verneed(section, define);
      }
    }
    if (!versym) return;

    size_t count = m_.dynamic_symbols.size();
    if (versym->size != count * sizeof(Elf64_Half)) {
      bad("{}: {} bytes for {} symbols (expected {})", label(*versym), versym->size, count,
          count * sizeof(Elf64_Half));
    }
    auto bytes = contents(*versym);
    for (size_t i = 0; i < count; ++i) {
      auto entry = load<Elf64_Half>(bytes, i * sizeof(Elf64_Half));
      Symbol& symbol = m_.dynamic_symbols[i];
      size_t index = entry & 0x7fff;
      symbol.default_version = (entry & 0x8000) == 0;
      if (index == VER_NDX_LOCAL || index == VER_NDX_GLOBAL) continue;
      if (index >= names.size() || names[index].data() == nullptr) {
        bad("{}: symbol {} '{}': version index {} is not defined", label(*versym), i, symbol.name, index);
      }
      symbol.version = names[index];
    }
  }

  template <typename Define>
  void read_verdef(const Section& section, Define& define) {
    const Section& strings = string_table_linked_from(section);
    auto bytes = contents(section);
    uint64_t offset = 0;
    // sh_info holds the number of entries; offsets only grow, so the walk ends.
    for (uint32_t n = 0; n < section.info; ++n) {
      if (!fits_in(bytes, offset, sizeof(Elf64_Verdef))) {
        bad("{}: entry {} lies outside the section", label(section), n);
      }
      auto def = load<Elf64_Verdef>(bytes, offset);
      if (def.vd_cnt > 0) {
        uint64_t aux_offset = offset + def.vd_aux;
        if (!fits_in(bytes, aux_offset, sizeof(Elf64_Verdaux))) {
          bad("{}: entry {}: name record lies outside the section", label(section), n);
        }
        auto aux = load<Elf64_Verdaux>(bytes, aux_offset);
        auto name = string_at(strings, aux.vda_name);
        if (!name) {
          bad("{}: entry {}: name offset {:#x} is outside {}", label(section), n, aux.vda_name,
              label(strings));
        }
        define(section, def.vd_ndx, *name);
      }
      if (def.vd_next == 0) break;
      offset += def.vd_next;
    }
  }

  template <typename Define>
  void read_verneed(const Section& section, Define& define) {
    const Section& strings = string_table_linked_from(section);
    auto bytes = contents(section);
    uint64_t offset = 0;
    for (uint32_t n = 0; n < section.info; ++n) {
      if (!fits_in(bytes, offset, sizeof(Elf64_Verneed))) {
        bad("{}: entry {} lies outside the section", label(section), n);
      }
      auto need = load<Elf64_Verneed>(bytes, offset);
      uint64_t aux_offset = offset + need.vn_aux;
      for (uint32_t k = 0; k < need.vn_cnt; ++k) {
        if (!fits_in(bytes, aux_offset, sizeof(Elf64_Vernaux))) {
          bad("{}: entry {}: version {} lies outside the section", label(section), n, k);
        }
        auto aux = load<Elf64_Vernaux>(bytes, aux_offset);
        auto name = string_at(strings, aux.vna_name);
        if (!name) {
          bad("{}: entry {}: version {}: name offset {:#x} is outside {}", label(section), n, k, aux.vna_name,
              label(strings));
        }
        define(section, aux.vna_other, *name);
        if (aux.vna_next == 0) break;
        aux_offset += aux.vna_next;
      }
      if (need.vn_next == 0) break;
      offset += need.vn_next;
    }
  }

  static bool fits_in(std::span<const uint8_t> bytes, uint64_t offset, uint64_t size) {
    return offset <= bytes.size() && bytes.size() - offset >= size;
  }

  void read_relocations() {
    m_.relocations.resize(m_.sections.size());
    for (const Section& section : m_.sections) {
      if (section.type == SHT_REL) bad("{}: REL relocations are not supported", label(section));
      if (section.type == SHT_RELA) read_rela(section);
    }
  }

  void read_rela(const Section& section) {
    if (section.entsize != sizeof(Elf64_Rela)) {
      bad("{}: entry size {} (expected {})", label(section), section.entsize, sizeof(Elf64_Rela));
    }
    if (section.size % sizeof(Elf64_Rela) != 0) {
      bad("{}: size {} is not a multiple of the entry size", label(section), section.size);
    }
    if (symtab_index_ == 0 || section.link != symtab_index_) {
      bad("{}: sh_link {} does not name the symbol table", label(section), section.link);
    }
    if (section.info == 0 || section.info >= m_.sections.size()) {
      bad("{}: sh_info {} does not name a section ({} sections)", label(section), section.info,
          m_.sections.size());
    }
    const Section& target = m_.sections[section.info];
    if (target.type == SHT_NOBITS || target.type == SHT_NULL) {
      bad("{}: applies to {}, which has no contents", label(section), label(target));
    }
    uint64_t limit = target.size;
    // Debug sections built with -gz: offsets refer to the uncompressed bytes, which
    // section_bytes() does not give, so their relocations are checked and dropped.
    bool keep = true;
    if (target.flags & SHF_COMPRESSED) {
      auto bytes = contents(target);
      if (bytes.size() < sizeof(Elf64_Chdr)) bad("{}: compressed but too small for its header", label(target));
      limit = load<Elf64_Chdr>(bytes, 0).ch_size;
      keep = false;
    }

    Elf_Data* data = data_of(section);
    size_t count = section.size / sizeof(Elf64_Rela);
    std::vector<Relocation> dropped;
    auto& list = keep ? m_.relocations[target.index] : dropped;
    list.reserve(list.size() + count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Rela raw;
      if (!gelf_getrela(data, static_cast<int>(i), &raw)) {
        bad("{}: relocation {}: {}", label(section), i, elf_errmsg(-1));
      }
      Relocation& relocation = list.emplace_back();
      relocation.offset = raw.r_offset;
      relocation.type = static_cast<uint32_t>(GELF_R_TYPE(raw.r_info));
      relocation.symbol = static_cast<uint32_t>(GELF_R_SYM(raw.r_info));
      relocation.addend = raw.r_addend;
      if (relocation.symbol >= m_.symbols.size()) {
        bad("{}: relocation {}: symbol index {} out of range ({} symbols)", label(section), i,
            relocation.symbol, m_.symbols.size());
      }
      auto width = relocation_width(relocation.type);
      if (!width) bad("{}: relocation {}: unknown type {}", label(section), i, relocation.type);
      if (relocation.offset > limit || limit - relocation.offset < *width) {
        bad("{}: relocation {}: {} bytes at offset {:#x} lie outside {} ({:#x} bytes)", label(section), i,
            *width, relocation.offset, label(target), limit);
      }
    }
  }

  // Program headers are not held to the file's size: a separate debug file keeps
  // the stripped binary's headers, whose offsets describe bytes it no longer has.
  // Readers of segment contents (bytes_at_vaddr, notes, dynamic) check instead.
  void read_segments(const HeaderFacts& facts) {
    size_t count = 0;
    if (elf_getphdrnum(elf_.get(), &count) != 0 || count != facts.segment_count) {
      bad("libelf disagrees about the number of program headers ({}): {}", facts.segment_count,
          elf_errmsg(-1));
    }
    m_.segments.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      GElf_Phdr header;
      if (!gelf_getphdr(elf_.get(), static_cast<int>(i), &header)) {
        bad("program header {}: {}", i, elf_errmsg(-1));
      }
      Segment& segment = m_.segments.emplace_back();
      segment.type = header.p_type;
      segment.flags = header.p_flags;
      segment.offset = header.p_offset;
      segment.vaddr = header.p_vaddr;
      segment.filesz = header.p_filesz;
      segment.memsz = header.p_memsz;
      segment.align = header.p_align;
    }
  }

  // DT_SONAME and DT_NEEDED. With section headers, .dynamic and its sh_link
  // string table (the same bytes DT_STRTAB points at); without them (a
  // section-stripped binary), PT_DYNAMIC and DT_STRTAB through the segments.
  void read_dynamic() {
    if (!m_.sections.empty()) {
      for (const Section& section : m_.sections) {
        if (section.type == SHT_DYNAMIC) {
          read_dynamic_section(section);
          return;
        }
      }
      return;
    }
    for (const Segment& segment : m_.segments) {
      if (segment.type == PT_DYNAMIC) {
        read_dynamic_segment(segment);
        return;
      }
    }
  }

  void read_dynamic_section(const Section& section) {
    if (section.entsize != sizeof(Elf64_Dyn)) {
      bad("{}: entry size {} (expected {})", label(section), section.entsize, sizeof(Elf64_Dyn));
    }
    if (section.size % sizeof(Elf64_Dyn) != 0) {
      bad("{}: size {} is not a multiple of the entry size", label(section), section.size);
    }
    const Section& strings = string_table_linked_from(section);
    Elf_Data* data = data_of(section);
    size_t count = section.size / sizeof(Elf64_Dyn);
    for (size_t i = 0; i < count; ++i) {
      GElf_Dyn entry;
      if (!gelf_getdyn(data, static_cast<int>(i), &entry)) {
        bad("{}: entry {}: {}", label(section), i, elf_errmsg(-1));
      }
      if (entry.d_tag == DT_NULL) break;
      if (entry.d_tag != DT_SONAME && entry.d_tag != DT_NEEDED) continue;
      auto text = string_at(strings, entry.d_un.d_val);
      if (!text) {
        bad("{}: entry {}: string offset {:#x} is outside {}", label(section), i, entry.d_un.d_val,
            label(strings));
      }
      store_dynamic_string(entry.d_tag, *text);
    }
  }

  void read_dynamic_segment(const Segment& segment) {
    auto bytes = file_range(m_.bytes, segment.offset, segment.filesz);
    if (bytes.size() != segment.filesz) bad("PT_DYNAMIC lies outside the file");
    uint64_t table = 0, table_size = 0;
    std::vector<std::pair<int64_t, uint64_t>> wanted;
    for (size_t at = 0; at + sizeof(Elf64_Dyn) <= bytes.size(); at += sizeof(Elf64_Dyn)) {
      auto entry = load<Elf64_Dyn>(bytes, at);
      if (entry.d_tag == DT_NULL) break;
      if (entry.d_tag == DT_STRTAB) table = entry.d_un.d_ptr;
      if (entry.d_tag == DT_STRSZ) table_size = entry.d_un.d_val;
      if (entry.d_tag == DT_SONAME || entry.d_tag == DT_NEEDED) {
        wanted.emplace_back(entry.d_tag, entry.d_un.d_val);
      }
    }
    if (wanted.empty()) return;
    auto strings = loaded_bytes(m_, table, table_size);
    if (strings.empty()) bad("PT_DYNAMIC: DT_STRTAB ({:#x}, {} bytes) is not in the file", table, table_size);
    for (auto [tag, offset] : wanted) {
      if (offset >= strings.size()) bad("PT_DYNAMIC: string offset {:#x} is outside DT_STRTAB", offset);
      auto* start = strings.data() + offset;
      auto* end = static_cast<const uint8_t*>(std::memchr(start, 0, strings.size() - offset));
      if (!end) bad("PT_DYNAMIC: string at offset {:#x} is not terminated", offset);
      store_dynamic_string(tag, std::string_view(reinterpret_cast<const char*>(start), end - start));
    }
  }

  void store_dynamic_string(int64_t tag, std::string_view text) {
    if (tag == DT_SONAME) {
      m_.soname = text;
    } else {
      m_.needed.emplace_back(text);
    }
  }

  // NT_GNU_BUILD_ID from the note sections, or from PT_NOTE when there are no
  // section headers. A malformed note ends the walk of its own area only: notes
  // are informational and nothing else indexes them.
  void read_build_id() {
    if (!m_.sections.empty()) {
      for (const Section& section : m_.sections) {
        if (section.type == SHT_NOTE && find_build_id(contents(section), section.align == 8 ? 8 : 4)) return;
      }
      return;
    }
    for (const Segment& segment : m_.segments) {
      if (segment.type != PT_NOTE) continue;
      auto bytes = file_range(m_.bytes, segment.offset, segment.filesz);
      if (find_build_id(bytes, segment.align == 8 ? 8 : 4)) return;
    }
  }

  bool find_build_id(std::span<const uint8_t> notes, uint64_t align) {
    auto round = [align](uint64_t n) { return (n + align - 1) & ~(align - 1); };
    uint64_t at = 0;
    while (fits_in(notes, at, sizeof(Elf64_Nhdr))) {
      auto header = load<Elf64_Nhdr>(notes, at);
      uint64_t name_at = at + sizeof(Elf64_Nhdr);
      if (!fits_in(notes, name_at, header.n_namesz)) return false;
      uint64_t desc_at = name_at + round(header.n_namesz);
      if (!fits_in(notes, desc_at, header.n_descsz)) return false;
      if (header.n_type == NT_GNU_BUILD_ID && header.n_namesz == sizeof ELF_NOTE_GNU &&
          std::memcmp(notes.data() + name_at, ELF_NOTE_GNU, sizeof ELF_NOTE_GNU) == 0) {
        static constexpr char digits[] = "0123456789abcdef";
        m_.build_id.reserve(header.n_descsz * 2);
        for (uint64_t i = 0; i < header.n_descsz; ++i) {
          uint8_t byte = notes[desc_at + i];
          m_.build_id += digits[byte >> 4];
          m_.build_id += digits[byte & 15];
        }
        return true;
      }
      at = desc_at + round(header.n_descsz);
    }
    return false;
  }

  Model& m_;
  ElfHandle elf_;
  size_t symtab_index_ = 0;
  size_t dynsym_index_ = 0;
};

}  // namespace

struct ElfFile::Impl : Model {};

std::optional<unsigned> relocation_width(uint32_t type) {
  switch (type) {
    case R_X86_64_NONE:
    case R_X86_64_COPY:
    case R_X86_64_TLSDESC_CALL:  // a marker on the call instruction; touches nothing
      return 0;
    case R_X86_64_8:
    case R_X86_64_PC8:
      return 1;
    case R_X86_64_16:
    case R_X86_64_PC16:
      return 2;
    case R_X86_64_PC32:
    case R_X86_64_GOT32:
    case R_X86_64_PLT32:
    case R_X86_64_GOTPCREL:
    case R_X86_64_32:
    case R_X86_64_32S:
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
    case R_X86_64_DTPOFF32:
    case R_X86_64_GOTTPOFF:
    case R_X86_64_TPOFF32:
    case R_X86_64_GOTPC32:
    case R_X86_64_SIZE32:
    case R_X86_64_GOTPC32_TLSDESC:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
      return 4;
    case R_X86_64_64:
    case R_X86_64_GLOB_DAT:
    case R_X86_64_JUMP_SLOT:
    case R_X86_64_RELATIVE:
    case R_X86_64_DTPMOD64:
    case R_X86_64_DTPOFF64:
    case R_X86_64_TPOFF64:
    case R_X86_64_PC64:
    case R_X86_64_GOTOFF64:
    case R_X86_64_GOT64:
    case R_X86_64_GOTPCREL64:
    case R_X86_64_GOTPC64:
    case R_X86_64_GOTPLT64:
    case R_X86_64_PLTOFF64:
    case R_X86_64_SIZE64:
    case R_X86_64_IRELATIVE:
    case R_X86_64_RELATIVE64:
      return 8;
    case R_X86_64_TLSDESC:
      return 16;
    default:
      // 43..51: the APX forms of GOTPCRELX, GOTTPOFF and GOTPC32_TLSDESC (binutils
      // 2.43 and later), all 32-bit fields.
      if (type >= 43 && type <= 51) return 4;
      return std::nullopt;
  }
}

ElfFile::ElfFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ElfFile::ElfFile(ElfFile&&) noexcept = default;
ElfFile& ElfFile::operator=(ElfFile&&) noexcept = default;
ElfFile::~ElfFile() = default;

ElfFile ElfFile::open(const std::string& path) { return parse(read_whole_file(path), path); }

ElfFile ElfFile::parse(std::vector<uint8_t> bytes, std::string name) {
  auto impl = std::make_unique<Impl>();
  impl->name = std::move(name);
  impl->bytes = std::move(bytes);
  Reader(*impl).read();
  return ElfFile(std::move(impl));
}

const std::string& ElfFile::name() const { return impl_->name; }
uint16_t ElfFile::type() const { return impl_->type; }
uint16_t ElfFile::machine() const { return impl_->machine; }
std::span<const uint8_t> ElfFile::bytes() const { return impl_->bytes; }
const std::string& ElfFile::build_id() const { return impl_->build_id; }
const std::string& ElfFile::soname() const { return impl_->soname; }
const std::vector<std::string>& ElfFile::needed() const { return impl_->needed; }
const std::vector<Section>& ElfFile::sections() const { return impl_->sections; }

const Section* ElfFile::find_section(std::string_view name) const {
  auto found = impl_->section_by_name.find(name);
  return found == impl_->section_by_name.end() ? nullptr : &impl_->sections[found->second];
}

std::span<const uint8_t> ElfFile::section_bytes(const Section& section) const {
  // Go by index so that a Section from another file cannot reach outside ours.
  if (section.index >= impl_->sections.size()) return {};
  const Section& ours = impl_->sections[section.index];
  if (ours.type == SHT_NOBITS || ours.type == SHT_NULL) return {};
  return file_range(impl_->bytes, ours.offset, ours.size);
}

const std::vector<Symbol>& ElfFile::symbols() const { return impl_->symbols; }
const std::vector<Symbol>& ElfFile::dynamic_symbols() const { return impl_->dynamic_symbols; }

const std::vector<Relocation>& ElfFile::relocations_for(const Section& target) const {
  static const std::vector<Relocation> none;
  if (target.index >= impl_->relocations.size()) return none;
  return impl_->relocations[target.index];
}

const std::vector<Segment>& ElfFile::segments() const { return impl_->segments; }

std::optional<Segment> ElfFile::tls_segment() const {
  for (const Segment& segment : impl_->segments) {
    if (segment.type == PT_TLS) return segment;
  }
  return std::nullopt;
}

std::span<const uint8_t> ElfFile::bytes_at_vaddr(uint64_t vaddr, uint64_t size) const {
  return loaded_bytes(*impl_, vaddr, size);
}

}  // namespace suture::elf
