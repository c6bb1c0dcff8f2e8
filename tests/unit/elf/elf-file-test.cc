// The ELF model against real files: fixtures built by this machine's compiler,
// libc.so.6, and (when libc6-dbg is installed) libc's separate debug file.
#include "elf/elf-file.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/error.h"

namespace suture::elf {
namespace {

constexpr const char* libc_path = "/lib/x86_64-linux-gnu/libc.so.6";

std::vector<const Symbol*> named(const std::vector<Symbol>& symbols, std::string_view name) {
  std::vector<const Symbol*> found;
  for (const Symbol& symbol : symbols) {
    if (symbol.name == name) found.push_back(&symbol);
  }
  return found;
}

// The build-id as binutils prints it, so that we are not checked against ourselves.
std::string readelf_build_id(const std::string& path) {
  std::string command = "readelf -n '" + path + "' 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return {};
  std::string output;
  char buffer[4096];
  while (size_t got = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, got);
  pclose(pipe);
  const std::string key = "Build ID: ";
  size_t at = output.find(key);
  if (at == std::string::npos) return {};
  size_t start = at + key.size();
  return output.substr(start, output.find('\n', start) - start);
}

TEST(ElfFile, GroupsStaticsByTheirSourceFile) {
  auto file = ElfFile::open(STATICS_EXE);
  EXPECT_EQ(file.type(), ET_DYN);  // Debian's gcc links PIE by default
  EXPECT_EQ(file.machine(), EM_X86_64);

  for (const char* name : {"bump", "counter"}) {
    auto found = named(file.symbols(), name);
    ASSERT_EQ(found.size(), 2u) << name;
    std::vector<std::string> files;
    for (const Symbol* symbol : found) {
      EXPECT_EQ(symbol->bind, STB_LOCAL);
      EXPECT_TRUE(symbol->defined());
      files.push_back(symbol->file);
    }
    std::sort(files.begin(), files.end());
    EXPECT_EQ(files, (std::vector<std::string>{"statics-a.c", "statics-b.c"})) << name;
  }
  for (const Symbol* bump : named(file.symbols(), "bump")) EXPECT_EQ(bump->type, STT_FUNC);

  // Globals carry no file; neither does the null symbol.
  auto entry = named(file.symbols(), "a_entry");
  ASSERT_EQ(entry.size(), 1u);
  EXPECT_EQ(entry[0]->bind, STB_GLOBAL);
  EXPECT_EQ(entry[0]->file, "");
  EXPECT_EQ(file.symbols()[0].file, "");
  EXPECT_EQ(file.symbols()[0].name, "");
}

TEST(ElfFile, ReadsCodeThroughTheLoadSegments) {
  auto file = ElfFile::open(STATICS_EXE);
  auto entry = named(file.symbols(), "a_entry");
  ASSERT_EQ(entry.size(), 1u);
  const Section* text = file.find_section(".text");
  ASSERT_NE(text, nullptr);
  ASSERT_EQ(entry[0]->shndx, text->index);

  auto through_segments = file.bytes_at_vaddr(entry[0]->value, entry[0]->size);
  auto through_section = file.section_bytes(*text).subspan(entry[0]->value - text->addr, entry[0]->size);
  ASSERT_EQ(through_segments.size(), entry[0]->size);
  EXPECT_TRUE(std::equal(through_segments.begin(), through_segments.end(), through_section.begin()));

  // .bss is not file-backed; an address nothing maps gives nothing either.
  const Section* bss = file.find_section(".bss");
  ASSERT_NE(bss, nullptr);
  EXPECT_TRUE(file.bytes_at_vaddr(bss->addr, bss->size).empty());
  EXPECT_TRUE(file.bytes_at_vaddr(~uint64_t{0} - 4, 8).empty());
  EXPECT_FALSE(file.tls_segment());
}

TEST(ElfFile, BuildIdMatchesReadelf) {
  for (std::string path : {std::string(STATICS_EXE), std::string(libc_path)}) {
    auto expected = readelf_build_id(path);
    ASSERT_FALSE(expected.empty()) << "readelf found no build-id in " << path;
    EXPECT_EQ(ElfFile::open(path).build_id(), expected) << path;
  }
}

TEST(ElfFile, ReadsSymbolVersionsOfLibc) {
  auto libc = ElfFile::open(libc_path);
  EXPECT_EQ(libc.soname(), "libc.so.6");
  EXPECT_NE(std::find(libc.needed().begin(), libc.needed().end(), "ld-linux-x86-64.so.2"),
            libc.needed().end());
  ASSERT_TRUE(libc.tls_segment());

  auto memcpys = named(libc.dynamic_symbols(), "memcpy");
  ASSERT_EQ(memcpys.size(), 2u);
  const Symbol* current = memcpys[0]->default_version ? memcpys[0] : memcpys[1];
  const Symbol* old = memcpys[0]->default_version ? memcpys[1] : memcpys[0];
  EXPECT_EQ(current->version, "GLIBC_2.14");
  EXPECT_TRUE(current->default_version);
  EXPECT_EQ(old->version, "GLIBC_2.2.5");
  EXPECT_FALSE(old->default_version);

  // Undefined symbols take their versions from .gnu.version_r (ld.so's GLIBC_PRIVATE).
  bool private_import = false;
  for (const Symbol& symbol : libc.dynamic_symbols()) {
    if (!symbol.defined() && symbol.version == "GLIBC_PRIVATE") private_import = true;
  }
  EXPECT_TRUE(private_import);
  EXPECT_TRUE(libc.symbols().empty());  // stripped: .symtab lives in the debug file
}

TEST(ElfFile, ReadsRelocationsOfAnObject) {
  auto object = ElfFile::open(RELOCATIONS_OBJECT);
  EXPECT_EQ(object.type(), ET_REL);
  const Section* text = object.find_section(".text");
  ASSERT_NE(text, nullptr);
  const auto& relocations = object.relocations_for(*text);
  ASSERT_EQ(relocations.size(), 3u);

  auto against = [&](const Relocation& relocation) { return object.symbols()[relocation.symbol].name; };
  bool got = false, plt = false, pc32 = false;
  for (const Relocation& relocation : relocations) {
    EXPECT_LE(relocation.offset + 4, text->size);
    if (against(relocation) == "shared_counter") {
      got = relocation.type == R_X86_64_REX_GOTPCRELX || relocation.type == R_X86_64_GOTPCREL;
      EXPECT_EQ(relocation.addend, -4);
    } else if (against(relocation) == "helper") {
      plt = relocation.type == R_X86_64_PLT32;
      EXPECT_FALSE(object.symbols()[relocation.symbol].defined());
    } else {
      pc32 = relocation.type == R_X86_64_PC32;
      EXPECT_EQ(object.symbols()[relocation.symbol].type, STT_SECTION);
    }
  }
  EXPECT_TRUE(got);
  EXPECT_TRUE(plt);
  EXPECT_TRUE(pc32);

  // Relocations land on the section they apply to (sh_info), not on .rela.text.
  const Section* eh_frame = object.find_section(".eh_frame");
  ASSERT_NE(eh_frame, nullptr);
  EXPECT_EQ(object.relocations_for(*eh_frame).size(), 1u);
  EXPECT_TRUE(object.relocations_for(*object.find_section(".rela.text")).empty());
  EXPECT_EQ(object.find_section(".no-such-section"), nullptr);
}

TEST(ElfFile, AcceptsCompressedDebugSections) {
  auto object = ElfFile::open(RELOCATIONS_GZ_OBJECT);
  const Section* debug_info = object.find_section(".debug_info");
  ASSERT_NE(debug_info, nullptr);
  EXPECT_TRUE(debug_info->flags & SHF_COMPRESSED);
  // Checked on load, but not handed out: they apply to the uncompressed bytes.
  EXPECT_TRUE(object.relocations_for(*debug_info).empty());
  EXPECT_EQ(object.relocations_for(*object.find_section(".text")).size(), 3u);
}

TEST(ElfFile, RelocationWidthsFollowThePsAbi) {
  EXPECT_EQ(relocation_width(R_X86_64_64), 8u);
  EXPECT_EQ(relocation_width(R_X86_64_PC32), 4u);
  EXPECT_EQ(relocation_width(R_X86_64_PLT32), 4u);
  EXPECT_EQ(relocation_width(R_X86_64_16), 2u);
  EXPECT_EQ(relocation_width(R_X86_64_PC8), 1u);
  EXPECT_EQ(relocation_width(R_X86_64_NONE), 0u);
  EXPECT_FALSE(relocation_width(39));  // retired R_X86_64_PC32_BND
  EXPECT_FALSE(relocation_width(1000));
}

TEST(ElfFile, FindsDebugFileThroughDebuglink) {
  auto stripped = ElfFile::open(STATICS_EXE_STRIPPED);
  EXPECT_TRUE(stripped.symbols().empty());
  auto found = find_debug_file(stripped, STATICS_EXE_STRIPPED);
  ASSERT_TRUE(found);
  EXPECT_EQ(std::filesystem::path(*found), std::filesystem::path(STATICS_EXE_DEBUG));

  // The debug file keeps the stripped binary's program headers and .symtab.
  auto debug = ElfFile::open(*found);
  EXPECT_EQ(debug.build_id(), stripped.build_id());
  EXPECT_EQ(named(debug.symbols(), "bump").size(), 2u);

  // The .debug/ subdirectory, as some distributions install them.
  auto dir = std::filesystem::temp_directory_path() / ("suture-debuglink-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir / ".debug");
  std::filesystem::copy_file(STATICS_EXE_STRIPPED, dir / "program");
  std::filesystem::copy_file(STATICS_EXE_DEBUG, dir / ".debug" / "statics-exe.debug");
  auto nested = find_debug_file(stripped, (dir / "program").string());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(nested);
  EXPECT_EQ(std::filesystem::path(*nested), dir / ".debug" / "statics-exe.debug");

  // Not installed anywhere: nothing.
  EXPECT_FALSE(find_debug_file(stripped, "/nonexistent/dir/program"));
}

TEST(ElfFile, FindsLibcDebugFileByBuildId) {
  auto libc = ElfFile::open(libc_path);
  std::string expected =
      "/usr/lib/debug/.build-id/" + libc.build_id().substr(0, 2) + "/" + libc.build_id().substr(2) + ".debug";
  if (!std::filesystem::exists(expected)) GTEST_SKIP() << "libc6-dbg is not installed";
  auto found = find_debug_file(libc, libc_path);
  ASSERT_TRUE(found);
  EXPECT_EQ(*found, expected);
  auto debug = ElfFile::open(*found);
  EXPECT_EQ(debug.build_id(), libc.build_id());
  EXPECT_GT(debug.symbols().size(), 1000u);
}

// Parsing is on the path of every `suture apply`; it must stay in milliseconds.
TEST(ElfFile, ParsesLargeFilesQuickly) {
  std::vector<std::string> paths = {libc_path, "/proc/self/exe"};
  auto libc = ElfFile::open(libc_path);
  if (auto debug = find_debug_file(libc, libc_path)) paths.push_back(*debug);
  for (const auto& path : paths) {
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    constexpr int rounds = 5;
    auto start = std::chrono::steady_clock::now();
    size_t symbols = 0;
    for (int i = 0; i < rounds; ++i) {
      auto file = ElfFile::parse(bytes, path);
      symbols = file.symbols().size() + file.dynamic_symbols().size();
    }
    auto each = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start) / rounds;
    std::printf("%s: %zu bytes, %zu symbols, %.2f ms per parse\n", path.c_str(), bytes.size(), symbols,
                each.count());
    EXPECT_LT(each.count(), 250.0) << path;  // generous: a loaded CI machine, a debug build
  }
}

TEST(ElfFile, OpenNamesTheFile) {
  try {
    ElfFile::open("/nonexistent/file.o");
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(std::string(error.what()).rfind("/nonexistent/file.o: cannot open", 0), 0u) << error.what();
  }
}

}  // namespace
}  // namespace suture::elf
