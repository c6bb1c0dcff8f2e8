// Extraction against pairs of objects that this machine's compiler built from one
// fixture source, without and with -DPATCHED (see fixtures/).
#include "build/extract/extract-patch.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace suture::build::extract {
namespace {

elf::ElfFile object(const std::string& fixture, const char* build) {
  return elf::ElfFile::open(fmt::format("{}/{}.{}.o", FIXTURE_OBJECTS, fixture, build));
}

struct Result {
  Extracted extracted;
  elf::ElfFile out;
};

Result extract(const std::string& fixture) {
  elf::ElfFile original = object(fixture, "orig");
  elf::ElfFile patched = object(fixture, "patched");
  diff::ObjectDiff d = diff::diff_objects(original, patched);
  Extracted e = extract_patch(patched, d, fixture + ".c");
  elf::ElfFile out = elf::ElfFile::parse(e.object, fixture + ".extracted.o");  // must be accepted
  return {std::move(e), std::move(out)};
}

std::set<std::string> allocated_sections(const elf::ElfFile& file) {
  std::set<std::string> names;
  for (const auto& s : file.sections())
    if (s.flags & SHF_ALLOC) names.insert(s.name);
  return names;
}

const elf::Symbol* symbol(const elf::ElfFile& file, const std::string& name) {
  for (const auto& s : file.symbols())
    if (s.name == name) return &s;
  return nullptr;
}

std::string transcript(const Extracted& e) {
  std::string out;
  for (const auto& line : e.included) out += line + "\n";
  for (const auto& r : e.replacements) out += fmt::format("replace {} ({}) by {}\n", r.symbol, r.file, r.new_symbol);
  for (const auto& b : e.bindings) out += fmt::format("bind {} to {}:{}\n", b.local, b.file, b.symbol);
  return out;
}

// The symbol (resolved through section symbols to "SECTION+off") a relocation of
// `section` at `offset` names, as text.
std::vector<std::string> references(const elf::ElfFile& file, const std::string& section) {
  std::vector<std::string> out;
  const elf::Section* s = file.find_section(section);
  if (!s) return out;
  for (const auto& r : file.relocations_for(*s)) {
    const auto& sym = file.symbols().at(r.symbol);
    std::string name = sym.type == STT_SECTION ? file.sections().at(sym.shndx).name : sym.name;
    out.push_back(fmt::format("{}{}{}", name, r.addend < 0 ? "-" : "+", std::abs(r.addend)));
  }
  return out;
}

bool links_with_ld(const std::vector<uint8_t>& bytes, std::string& output) {
  char path[] = "/tmp/suture-extract-XXXXXX.o";
  int fd = mkstemps(path, 2);
  if (fd < 0) return false;
  bool written = write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
  close(fd);
  std::string command = fmt::format("ld -r -o /dev/null {} 2>&1", path);
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[512];
  while (pipe && fgets(buffer, sizeof buffer, pipe)) output += buffer;
  int status = pipe ? pclose(pipe) : -1;
  unlink(path);
  return written && status == 0;
}

// .rodata.str1.1, or .rodata.FUNCTION.str1.1 as gcc names them per function.
bool is_string_section(const std::string& name) {
  return name.starts_with(".rodata") && name.find(".str1.") != std::string::npos;
}

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

TEST(ExtractPatch, OnlyChangedAndNewSectionsAndTheirConstants) {
  auto [e, out] = extract("statics");
  std::set<std::string> expected = {".text.bump", ".text.name_of", ".text.twice", ".text.fresh_api",
                                    ".data.extra", ".bss.hits", ".rodata.name_of",
                                    ".eh_frame"};  // the unwind records of those functions
  std::set<std::string> got = allocated_sections(out);
  for (const auto& name : expected) EXPECT_TRUE(got.count(name)) << name << "\n" << transcript(e);
  for (const auto& name : {".text.scale", ".text.untouched", ".bss.counter", ".bss.calls.0", ".bss.total"})
    EXPECT_FALSE(got.count(name)) << name << "\n" << transcript(e);
  // String literals: exactly the mergeable string sections, no other section.
  for (const auto& name : got)
    EXPECT_TRUE(expected.count(name) || is_string_section(name)) << name << "\n" << transcript(e);
}

TEST(ExtractPatch, ChangedFunctionsAreReplacedUnderNewNames) {
  auto [e, out] = extract("statics");
  ASSERT_EQ(e.replacements.size(), 2u) << transcript(e);
  for (const auto& r : e.replacements) {
    EXPECT_EQ(r.file, "") << r.symbol;  // both are global
    EXPECT_EQ(r.new_symbol, r.symbol + ".suture");
    const elf::Symbol* s = symbol(out, r.new_symbol);
    ASSERT_NE(s, nullptr) << r.new_symbol;
    EXPECT_TRUE(s->defined());
    EXPECT_EQ(s->type, STT_FUNC);
    EXPECT_EQ(symbol(out, r.symbol), nullptr) << r.symbol << " must not be defined or referenced by the patch";
  }
  // New functions keep their names; a new static stays local.
  const elf::Symbol* fresh = symbol(out, "fresh_api");
  ASSERT_NE(fresh, nullptr);
  EXPECT_TRUE(fresh->defined());
  EXPECT_EQ(fresh->bind, STB_GLOBAL);
  const elf::Symbol* twice = symbol(out, "twice");
  ASSERT_NE(twice, nullptr);
  EXPECT_TRUE(twice->defined());
  EXPECT_EQ(twice->bind, STB_LOCAL);
}

TEST(ExtractPatch, UnchangedStaticsAreBoundToTheRunningCopies) {
  auto [e, out] = extract("statics");
  std::map<std::string, std::string> bound;  // target symbol -> alias
  for (const auto& b : e.bindings) {
    EXPECT_EQ(b.file, "statics.c");
    bound[b.symbol] = b.local;
    const elf::Symbol* alias = symbol(out, b.local);
    ASSERT_NE(alias, nullptr) << b.local;
    EXPECT_FALSE(alias->defined()) << b.local;
  }
  ASSERT_TRUE(bound.count("scale")) << transcript(e);
  ASSERT_TRUE(bound.count("counter")) << transcript(e);
  ASSERT_TRUE(bound.count("calls.0")) << transcript(e);
  EXPECT_EQ(bound.size(), 3u) << transcript(e);
  // gcc wrote `.bss.counter-4`; the patch names the variable, with the same addend.
  std::vector<std::string> refs = references(out, ".text.bump");
  EXPECT_TRUE(contains(refs, bound["counter"] + "-4")) << fmt::format("{}", fmt::join(refs, " "));
  EXPECT_TRUE(contains(refs, bound["calls.0"] + "-4")) << fmt::format("{}", fmt::join(refs, " "));
  EXPECT_TRUE(contains(refs, bound["scale"] + "-4")) << fmt::format("{}", fmt::join(refs, " "));
  // Globals stay globals: libc and this object's unchanged data.
  EXPECT_TRUE(contains(refs, "printf-4"));
  EXPECT_TRUE(contains(refs, "total-4"));
  const elf::Symbol* total = symbol(out, "total");
  ASSERT_NE(total, nullptr);
  EXPECT_FALSE(total->defined());
  EXPECT_EQ(total->bind, STB_GLOBAL);
  // New data is the patch's own.
  EXPECT_TRUE(contains(refs, ".bss.hits-5")) << fmt::format("{}", fmt::join(refs, " "));
}

TEST(ExtractPatch, StringLiteralsComeAlongWithTheirRelocations) {
  auto [e, out] = extract("statics");
  // The relocation from bump to its format string still lands on the string.
  const elf::Section* text = out.find_section(".text.bump");
  ASSERT_NE(text, nullptr);
  bool found = false;
  for (const auto& r : out.relocations_for(*text)) {
    const auto& sym = out.symbols().at(r.symbol);
    if (!sym.defined() || sym.shndx >= out.sections().size()) continue;
    const auto& section = out.sections().at(sym.shndx);
    if (!is_string_section(section.name)) continue;
    auto bytes = out.section_bytes(section);
    uint64_t at = sym.value + static_cast<uint64_t>(r.addend + 4);
    ASSERT_LT(at, bytes.size());
    std::string text_there(reinterpret_cast<const char*>(bytes.data() + at));
    if (text_there == "bumped to %d after %d calls\n") found = true;
  }
  EXPECT_TRUE(found) << transcript(e);
  // The jump table of name_of came along and still points into name_of's code.
  std::vector<std::string> table = references(out, ".rodata.name_of");
  ASSERT_FALSE(table.empty());
  for (const auto& ref : table) EXPECT_TRUE(ref.starts_with(".text.name_of+")) << ref;
}

TEST(ExtractPatch, ColdPartComesWithItsFunction) {
  auto [e, out] = extract("cold");
  ASSERT_EQ(e.replacements.size(), 1u) << transcript(e);
  EXPECT_EQ(e.replacements[0].symbol, "parse");
  std::set<std::string> got = allocated_sections(out);
  EXPECT_TRUE(got.count(".text.parse")) << transcript(e);
  EXPECT_TRUE(got.count(".text.unlikely.parse")) << transcript(e);
  EXPECT_FALSE(got.count(".text.unlikely.report")) << transcript(e);
  const elf::Symbol* cold = symbol(out, "parse.cold");
  ASSERT_NE(cold, nullptr);
  EXPECT_EQ(cold->bind, STB_LOCAL);
  EXPECT_TRUE(contains(references(out, ".text.unlikely.parse"), "report-4"));
}

TEST(ExtractPatch, LdAcceptsTheObject) {
  for (const char* fixture : {"statics", "cold", "renumbered"}) {
    auto [e, out] = extract(fixture);
    std::string output;
    EXPECT_TRUE(links_with_ld(e.object, output)) << fixture << ": " << output;
    EXPECT_EQ(output, "") << fixture;
  }
}

TEST(ExtractPatch, UnchangedObjectGivesAnEmptyPatch) {
  elf::ElfFile original = object("statics", "orig");
  Extracted e = extract_patch(original, diff::diff_objects(original, original), "statics.c");
  EXPECT_TRUE(e.replacements.empty());
  EXPECT_TRUE(e.bindings.empty());
  EXPECT_NO_THROW(elf::ElfFile::parse(e.object, "empty.o"));
}


// The alias the patch binds to the running program's `name` of the fixture's file.
std::string bound_alias(const Extracted& e, const std::string& name) {
  for (const auto& b : e.bindings)
    if (b.symbol == name) return b.local;
  return "";
}

TEST(ExtractPatch, RenumberedStaticLocalIsBoundToTheRunningCopy) {
  auto [e, out] = extract("renumbered");
  // tick's counter is counter.1 in the patched object, counter.0 in the running program.
  std::string alias = bound_alias(e, "counter.0");
  ASSERT_NE(alias, "") << transcript(e);
  EXPECT_EQ(bound_alias(e, "counter.1"), "") << transcript(e);
  std::vector<std::string> refs = references(out, ".text.tick");
  EXPECT_TRUE(std::any_of(refs.begin(), refs.end(), [&](const std::string& r) { return r.starts_with(alias); }))
      << fmt::format("{}", fmt::join(refs, " ")) << "\n" << transcript(e);
  // later's counter (counter.0 in the patched object) is new: the patch's own copy.
  std::set<std::string> got = allocated_sections(out);
  EXPECT_TRUE(got.count(".data.counter.0")) << transcript(e);
  EXPECT_FALSE(got.count(".bss.counter.1")) << transcript(e);
}

TEST(ExtractPatch, NewVariablesAreThePatchsOwnAndPointAtTheRunningCopies) {
  auto [e, out] = extract("renumbered");
  std::set<std::string> got = allocated_sections(out);
  for (const char* name : {".bss.new_zero", ".data.new_set", ".data.rel.new_pointer",
                           ".data.rel.local.new_hidden_pointer"})
    EXPECT_TRUE(got.count(name)) << name << "\n" << transcript(e);
  for (const char* name : {".data.unchanged_global", ".data.hidden", ".data.rel.local.keep_hidden_alive"})
    EXPECT_FALSE(got.count(name)) << name << "\n" << transcript(e);
  for (const char* name : {"new_zero", "new_set", "new_pointer"}) {
    const elf::Symbol* s = symbol(out, name);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_TRUE(s->defined()) << name;
    EXPECT_EQ(s->bind, STB_GLOBAL) << name;
  }
  // The initial values point at the program's own variables: a global by its
  // name, a static through its binding.
  EXPECT_EQ(references(out, ".data.rel.new_pointer"), std::vector<std::string>{"unchanged_global+0"});
  std::string hidden = bound_alias(e, "hidden");
  ASSERT_NE(hidden, "") << transcript(e);
  EXPECT_EQ(references(out, ".data.rel.local.new_hidden_pointer"), std::vector<std::string>{hidden + "+0"});
  const elf::Symbol* global = symbol(out, "unchanged_global");
  ASSERT_NE(global, nullptr);
  EXPECT_FALSE(global->defined());
}

TEST(ExtractPatch, ReplacementsAndBindingsUseTheOriginalNames) {
  // As when gcc numbered a clone differently in the two builds: the differ
  // pairs bump with `bump.part.0` and scale with `scale.isra.0` of the original.
  elf::ElfFile original = object("statics", "orig");
  elf::ElfFile patched = object("statics", "patched");
  diff::ObjectDiff d = diff::diff_objects(original, patched);
  for (auto& change : d.changes)
    if (change.symbol == "bump") change.original = "bump.part.0";
  d.original_name["scale"] = "scale.isra.0";
  Extracted e = extract_patch(patched, d, "statics.c");
  bool replaced = false;
  for (const auto& r : e.replacements) {
    if (r.new_symbol != "bump.suture") continue;
    replaced = true;
    EXPECT_EQ(r.symbol, "bump.part.0");
  }
  EXPECT_TRUE(replaced) << transcript(e);
  EXPECT_NE(bound_alias(e, "scale.isra.0"), "") << transcript(e);
  EXPECT_EQ(bound_alias(e, "scale"), "") << transcript(e);
}

TEST(ExtractPatch, ALocalTheOriginalLacksAndThePatchDoesNotBringIsAnError) {
  elf::ElfFile original = object("statics", "orig");
  elf::ElfFile patched = object("statics", "patched");
  diff::ObjectDiff d = diff::diff_objects(original, patched);
  d.original_name.erase("counter");
  try {
    extract_patch(patched, d, "statics.c");
    FAIL() << "extracted although counter has no original";
  } catch (const std::exception& error) {
    EXPECT_NE(std::string(error.what()).find("counter: the new code refers to it, but it is neither in the original"),
              std::string::npos)
        << error.what();
  }
}

}  // namespace
}  // namespace suture::build::extract
