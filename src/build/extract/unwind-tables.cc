// Keeping the unwind records of the extracted code.
//
// The problem. A relocatable object has one .eh_frame for all its functions: a
// sequence of CIEs (what functions share: augmentation, personality routine,
// pointer encodings) and FDEs (one per function or .cold part: its range, its
// LSDA, its call frame program), each FDE pointing back to its CIE by a
// self-relative offset. The FDE's start is a PC32 relocation against the code's
// section, its LSDA one against .gcc_except_table*, a CIE's personality one
// against DW.ref.__gxx_personality_v0. The patch brings a few code sections;
// copying the whole .eh_frame would bring FDEs for code that stays behind (whose
// relocations would then have to name the running program's functions, and whose
// LSDAs would drag in landing pads that are not there).
//
// The approach. Walk the records; keep an FDE when the section its start is
// relocated against comes along, and the CIEs kept FDEs use; lay the kept
// records out in their original order, rewrite each FDE's CIE pointer for the
// new distance, and move the relocations with their records. What the kept
// records refer to besides their code (LSDAs, personality pointers) is reported
// for the extractor to include: those are the patched object's own and come
// with the code, like its string constants.
//
// Rejected: asking the assembler for per-function .eh_frame sections (gcc has no
// such option); rebuilding the CFI from the code (it is the compiler's to say).
#include "build/extract/unwind-tables.h"

#include <elf.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <map>
#include <set>
#include <span>

#include <fmt/format.h>

#include "common/error.h"

namespace suture::build::extract {
namespace {

struct Record {
  uint64_t offset = 0;  // of its length word
  uint64_t size = 0;    // length word included
  bool cie = false;
  uint64_t cie_offset = 0;  // FDEs: the CIE they use
};

uint32_t read32(std::span<const uint8_t> bytes, uint64_t at) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

}  // namespace

KeptUnwindTables keep_unwind_tables(const elf::ElfFile& object, const elf::Section& eh_frame,
                                    const std::function<bool(size_t)>& code_kept) {
  auto where = [&](uint64_t at) { return fmt::format("{}: {}+{:#x}", object.name(), eh_frame.name, at); };
  const auto bytes = object.section_bytes(eh_frame);
  const auto& relocations = object.relocations_for(eh_frame);

  // The records, up to the end of the section or a zero terminator.
  std::vector<Record> records;
  std::set<uint64_t> cies;
  for (uint64_t at = 0; at + 4 <= bytes.size();) {
    const uint32_t length = read32(bytes, at);
    if (length == 0) break;
    if (length == 0xffffffff) fail("{}: 64-bit DWARF records are not supported", where(at));
    if (length < 4 || at + 4 + length > bytes.size()) fail("{}: record of {} bytes overruns the section", where(at), length);
    Record r{at, 4 + uint64_t{length}, false, 0};
    const uint32_t id = read32(bytes, at + 4);
    if (id == 0) {
      r.cie = true;
      cies.insert(at);
    } else {
      if (id > at + 4 || !cies.count(at + 4 - id)) fail("{}: FDE's CIE pointer {:#x} leads to no CIE", where(at), id);
      r.cie_offset = at + 4 - id;
    }
    records.push_back(r);
    at += r.size;
  }

  // Which FDEs describe code that comes along: their start (offset 8) is
  // relocated against that code's section, or a symbol in it.
  std::map<uint64_t, const elf::Relocation*> by_offset;
  for (const elf::Relocation& rel : relocations) by_offset[rel.offset] = &rel;
  std::set<uint64_t> kept;
  for (const Record& r : records) {
    if (r.cie) continue;
    auto it = by_offset.find(r.offset + 8);
    if (it == by_offset.end() || it->second->type == R_X86_64_NONE)
      fail("{}: FDE's start has no relocation", where(r.offset));
    const elf::Symbol& s = object.symbols().at(it->second->symbol);
    if (s.defined() && s.shndx < SHN_LORESERVE && code_kept(s.shndx)) {
      kept.insert(r.offset);
      kept.insert(r.cie_offset);
    }
  }

  KeptUnwindTables out;
  std::map<uint64_t, uint64_t> moved;  // old record offset -> new
  std::set<size_t> referenced;
  for (const Record& r : records) {
    if (!kept.count(r.offset)) continue;
    const uint64_t at = out.bytes.size();
    moved[r.offset] = at;
    out.bytes.insert(out.bytes.end(), bytes.begin() + static_cast<ptrdiff_t>(r.offset),
                     bytes.begin() + static_cast<ptrdiff_t>(r.offset + r.size));
    if (!r.cie) {
      // The CIE pointer: distance from this field back to the CIE's new place.
      const uint32_t pointer = static_cast<uint32_t>(at + 4 - moved.at(r.cie_offset));
      std::memcpy(out.bytes.data() + at + 4, &pointer, 4);
    }
    for (auto it = by_offset.lower_bound(r.offset); it != by_offset.end() && it->first < r.offset + r.size; ++it) {
      elf::Relocation rel = *it->second;
      rel.offset = rel.offset - r.offset + at;
      out.relocations.push_back(rel);
      if (!r.cie && it->first == r.offset + 8) continue;  // the code it describes
      const elf::Symbol& s = object.symbols().at(rel.symbol);
      if (s.defined() && s.shndx < SHN_LORESERVE) referenced.insert(s.shndx);
    }
  }
  out.referenced_sections.assign(referenced.begin(), referenced.end());
  return out;
}

}  // namespace suture::build::extract
