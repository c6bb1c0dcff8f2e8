#include "build/extract/relocatable-writer.h"

#include <elf.h>

#include <cstring>
#include <map>

#include "common/error.h"

namespace suture::build::extract {
namespace {

// A string table: offset 0 is the empty string; equal names share one entry.
class StringTable {
 public:
  StringTable() : bytes_(1, 0) {}
  uint32_t add(const std::string& name) {
    if (name.empty()) return 0;
    auto [it, fresh] = offsets_.emplace(name, static_cast<uint32_t>(bytes_.size()));
    if (fresh) {
      bytes_.insert(bytes_.end(), name.begin(), name.end());
      bytes_.push_back(0);
    }
    return it->second;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
  std::map<std::string, uint32_t> offsets_;
};

template <typename T>
void append(std::vector<uint8_t>& out, const T& value) {
  const auto* p = reinterpret_cast<const uint8_t*>(&value);
  out.insert(out.end(), p, p + sizeof(T));
}

uint64_t align_up(uint64_t value, uint64_t align) { return align > 1 ? (value + align - 1) / align * align : value; }

}  // namespace

RelocatableWriter::RelocatableWriter() { symbols_.push_back({}); }

uint16_t RelocatableWriter::add_section(OutSection section) {
  if (section.type != SHT_NOBITS) section.size = section.bytes.size();
  sections_.push_back(std::move(section));
  if (sections_.size() >= SHN_LORESERVE - 8) fail("patch object: too many sections ({})", sections_.size());
  return static_cast<uint16_t>(sections_.size());
}

size_t RelocatableWriter::add_symbol(OutSymbol symbol) {
  symbols_.push_back(std::move(symbol));
  return symbols_.size() - 1;
}

std::vector<uint8_t> RelocatableWriter::write() const {
  // The symbol table: null, locals in handle order, then globals in handle order.
  std::vector<size_t> final_index(symbols_.size(), 0);
  std::vector<size_t> order;
  for (size_t h = 1; h < symbols_.size(); ++h)
    if (symbols_[h].bind == STB_LOCAL) order.push_back(h);
  const size_t first_global = order.size() + 1;
  for (size_t h = 1; h < symbols_.size(); ++h)
    if (symbols_[h].bind != STB_LOCAL) order.push_back(h);
  for (size_t i = 0; i < order.size(); ++i) final_index[order[i]] = i + 1;

  StringTable strtab, shstrtab;
  std::vector<uint8_t> symtab;
  append(symtab, Elf64_Sym{});
  for (size_t h : order) {
    const OutSymbol& s = symbols_[h];
    Elf64_Sym sym{};
    sym.st_name = strtab.add(s.name);
    sym.st_info = static_cast<unsigned char>(ELF64_ST_INFO(s.bind, s.type));
    sym.st_other = s.visibility;
    sym.st_shndx = s.shndx;
    sym.st_value = s.value;
    sym.st_size = s.size;
    append(symtab, sym);
  }

  // Section headers in output order, with their contents alongside.
  struct Pending {
    Elf64_Shdr header;
    const std::vector<uint8_t>* bytes;
    std::vector<uint8_t> owned;
  };
  std::vector<Pending> pending;
  pending.push_back({Elf64_Shdr{}, nullptr, {}});
  for (const OutSection& s : sections_) {
    Elf64_Shdr h{};
    h.sh_name = shstrtab.add(s.name);
    h.sh_type = s.type;
    h.sh_flags = s.flags;
    h.sh_size = s.size;
    h.sh_addralign = s.align ? s.align : 1;
    h.sh_entsize = s.entsize;
    pending.push_back({h, s.type == SHT_NOBITS ? nullptr : &s.bytes, {}});
  }
  const size_t rela_first = pending.size();
  size_t rela_count = 0;
  for (const OutSection& s : sections_) rela_count += s.relocations.empty() ? 0 : 1;
  const uint32_t symtab_index = static_cast<uint32_t>(rela_first + rela_count + 1);
  for (size_t i = 0; i < sections_.size(); ++i) {
    const OutSection& s = sections_[i];
    if (s.relocations.empty()) continue;
    Pending p{Elf64_Shdr{}, nullptr, {}};
    for (const OutRelocation& r : s.relocations) {
      Elf64_Rela rela{};
      rela.r_offset = r.offset;
      rela.r_info = ELF64_R_INFO(final_index.at(r.symbol), r.type);
      rela.r_addend = r.addend;
      append(p.owned, rela);
    }
    p.header.sh_name = shstrtab.add(".rela" + s.name);
    p.header.sh_type = SHT_RELA;
    p.header.sh_flags = SHF_INFO_LINK;
    p.header.sh_size = p.owned.size();
    p.header.sh_link = symtab_index;
    p.header.sh_info = static_cast<uint32_t>(i + 1);
    p.header.sh_addralign = 8;
    p.header.sh_entsize = sizeof(Elf64_Rela);
    pending.push_back(std::move(p));
  }
  {
    Pending note{Elf64_Shdr{}, nullptr, {}};
    note.header.sh_name = shstrtab.add(".note.GNU-stack");
    note.header.sh_type = SHT_PROGBITS;
    note.header.sh_addralign = 1;
    pending.push_back(std::move(note));
  }
  {
    Pending sym{Elf64_Shdr{}, nullptr, std::move(symtab)};
    sym.header.sh_name = shstrtab.add(".symtab");
    sym.header.sh_type = SHT_SYMTAB;
    sym.header.sh_size = sym.owned.size();
    sym.header.sh_link = symtab_index + 1;
    sym.header.sh_info = static_cast<uint32_t>(first_global);
    sym.header.sh_addralign = 8;
    sym.header.sh_entsize = sizeof(Elf64_Sym);
    pending.push_back(std::move(sym));
  }
  {
    Pending str{Elf64_Shdr{}, nullptr, strtab.bytes()};
    str.header.sh_name = shstrtab.add(".strtab");
    str.header.sh_type = SHT_STRTAB;
    str.header.sh_size = str.owned.size();
    str.header.sh_addralign = 1;
    pending.push_back(std::move(str));
  }
  {
    Pending shstr{Elf64_Shdr{}, nullptr, {}};
    shstr.header.sh_name = shstrtab.add(".shstrtab");
    shstr.owned = shstrtab.bytes();  // after the last name was added
    shstr.header.sh_type = SHT_STRTAB;
    shstr.header.sh_size = shstr.owned.size();
    shstr.header.sh_addralign = 1;
    pending.push_back(std::move(shstr));
  }

  // Layout: header, then each section's bytes at its alignment, then the
  // section header table.
  std::vector<uint8_t> out(sizeof(Elf64_Ehdr), 0);
  for (size_t i = 1; i < pending.size(); ++i) {
    Pending& p = pending[i];
    const std::vector<uint8_t>& bytes = p.bytes ? *p.bytes : p.owned;
    if (p.header.sh_type == SHT_NOBITS) {
      p.header.sh_offset = out.size();
      continue;
    }
    out.resize(align_up(out.size(), p.header.sh_addralign), 0);
    p.header.sh_offset = out.size();
    out.insert(out.end(), bytes.begin(), bytes.end());
  }
  out.resize(align_up(out.size(), 8), 0);
  const uint64_t shoff = out.size();
  for (const Pending& p : pending) append(out, p.header);

  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
  eh.e_type = ET_REL;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_shoff = shoff;
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = static_cast<uint16_t>(pending.size());
  eh.e_shstrndx = static_cast<uint16_t>(pending.size() - 1);
  std::memcpy(out.data(), &eh, sizeof eh);
  return out;
}

}  // namespace suture::build::extract
