// The unwind records extraction keeps: those of the code that comes along, with
// the exception tables and personality pointers they use, and nothing of the
// code that stays behind (fixtures/exceptions.cc).
#include "build/extract/unwind-tables.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "build/diff/object-diff.h"
#include "build/extract/extract-patch.h"
#include "common/error.h"

namespace suture::build::extract {
namespace {

elf::ElfFile object(const char* build) {
  return elf::ElfFile::open(fmt::format("{}/exceptions.{}.o", FIXTURE_OBJECTS, build));
}

uint32_t u32(std::span<const uint8_t> bytes, uint64_t at) {
  uint32_t v;
  std::memcpy(&v, bytes.data() + at, 4);
  return v;
}

// What the .eh_frame of `file` says: for each FDE, the name its start is
// relocated against and the names its other relocations (the LSDA) name; and
// whether every CIE pointer leads to a CIE.
struct Frames {
  std::map<std::string, std::vector<std::string>> fdes;  // code section -> other references
  std::set<std::string> cie_references;                   // personality pointers
  bool cie_pointers_valid = true;
};

std::string name_of(const elf::ElfFile& file, const elf::Relocation& r) {
  const elf::Symbol& s = file.symbols().at(r.symbol);
  return s.type == STT_SECTION ? file.sections().at(s.shndx).name : s.name;
}

Frames frames(const elf::ElfFile& file) {
  Frames out;
  const elf::Section* eh_frame = file.find_section(".eh_frame");
  if (!eh_frame) return out;
  const auto bytes = file.section_bytes(*eh_frame);
  std::map<uint64_t, const elf::Relocation*> relocations;
  for (const auto& r : file.relocations_for(*eh_frame)) relocations[r.offset] = &r;
  std::set<uint64_t> cies;
  for (uint64_t at = 0; at + 4 <= bytes.size();) {
    const uint32_t length = u32(bytes, at);
    if (length == 0) break;
    const uint32_t id = u32(bytes, at + 4);
    std::vector<std::string> others;
    std::string code;
    for (auto it = relocations.lower_bound(at); it != relocations.end() && it->first < at + 4 + length; ++it) {
      if (id != 0 && it->first == at + 8) code = name_of(file, *it->second);
      else others.push_back(name_of(file, *it->second));
    }
    if (id == 0) {
      cies.insert(at);
      out.cie_references.insert(others.begin(), others.end());
    } else {
      out.cie_pointers_valid = out.cie_pointers_valid && id <= at + 4 && cies.count(at + 4 - id);
      out.fdes[code] = others;
    }
    at += 4 + length;
  }
  return out;
}

struct Result {
  Extracted extracted;
  elf::ElfFile out;
};

Result extract() {
  elf::ElfFile original = object("orig");
  elf::ElfFile patched = object("patched");
  Extracted e = extract_patch(patched, diff::diff_objects(original, patched), "exceptions.cc");
  elf::ElfFile out = elf::ElfFile::parse(e.object, "exceptions.extracted.o");
  return {std::move(e), std::move(out)};
}

TEST(ExtractUnwindTables, OnlyTheRecordsOfTheCodeThatComesAlong) {
  auto [e, out] = extract();
  std::string transcript;
  for (const auto& line : e.included) transcript += line + "\n";
  ASSERT_EQ(e.replacements.size(), 2u) << transcript;

  const Frames f = frames(out);
  EXPECT_TRUE(f.cie_pointers_valid);
  std::set<std::string> described;
  for (const auto& [code, others] : f.fdes) described.insert(code);
  EXPECT_EQ(described, (std::set<std::string>{".text._Z6passesi", ".text.unlikely._Z6passesi", ".text._Z7catchesi",
                                              ".text.unlikely._Z7catchesi"}))
      << transcript;
  // Each FDE's LSDA is its function's exception table, which came along.
  EXPECT_EQ(f.fdes.at(".text._Z6passesi"), std::vector<std::string>{".gcc_except_table._Z6passesi"});
  EXPECT_EQ(f.fdes.at(".text._Z7catchesi"), std::vector<std::string>{".gcc_except_table._Z7catchesi"});
  EXPECT_NE(out.find_section(".gcc_except_table._Z6passesi"), nullptr);
  EXPECT_NE(out.find_section(".gcc_except_table._Z7catchesi"), nullptr);
  EXPECT_EQ(out.find_section(".gcc_except_table._Z5keepsi"), nullptr) << transcript;
  EXPECT_EQ(out.find_section(".text._Z5keepsi"), nullptr);

  // The personality pointer and the type_info pointer the handler matches come
  // along as the patch's own; what they point to is the running program's.
  EXPECT_EQ(f.cie_references, std::set<std::string>{"DW.ref.__gxx_personality_v0"});
  for (const char* name : {"DW.ref.__gxx_personality_v0", "DW.ref._ZTISt16invalid_argument"}) {
    bool defined = false;
    for (const auto& s : out.symbols()) defined = defined || (s.name == name && s.defined());
    EXPECT_TRUE(defined) << name << "\n" << transcript;
  }
}

TEST(ExtractUnwindTables, KeepingNoCodeKeepsNoRecords) {
  const elf::ElfFile patched = object("patched");
  const elf::Section* eh_frame = patched.find_section(".eh_frame");
  ASSERT_NE(eh_frame, nullptr);
  const KeptUnwindTables none = keep_unwind_tables(patched, *eh_frame, [](size_t) { return false; });
  EXPECT_TRUE(none.bytes.empty());
  EXPECT_TRUE(none.relocations.empty());
  EXPECT_TRUE(none.referenced_sections.empty());
  const KeptUnwindTables all = keep_unwind_tables(patched, *eh_frame, [](size_t) { return true; });
  EXPECT_EQ(all.bytes.size(), eh_frame->size);
  EXPECT_EQ(all.relocations.size(), patched.relocations_for(*eh_frame).size());
}

}  // namespace
}  // namespace suture::build::extract
