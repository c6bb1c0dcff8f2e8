// Resolution against real files: the fixture executable and library, the
// system's libc and dynamic linker.
#include "link/target-symbols.h"

#include <elf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>

#include "common/error.h"
#include "fixture-target.h"

namespace suture::link {
namespace {

using namespace fixtures;
using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TargetSymbols, ExecutableFunctionFromItsSymtab) {
  TargetSymbols target = make_target();
  ResolvedSymbol r = target.resolve("exe_function", 0);
  EXPECT_EQ(r.address, exe_symbol("exe_function"));
  EXPECT_EQ(r.type, STT_FUNC);
  EXPECT_EQ(r.object, kExe);
  EXPECT_FALSE(r.tls);
  EXPECT_THAT(r.description, HasSubstr("exe_function in "));
}

TEST(TargetSymbols, LibraryFunctionFromDynsym) {
  TargetSymbols target = make_target();
  ResolvedSymbol r = target.resolve("lib_function", 0);
  EXPECT_EQ(r.address, RemoteAddr(kLibBias + symbol_of(files().lib.dynamic_symbols(), "lib_function").value));
  EXPECT_EQ(r.object, kLib);
  EXPECT_THAT(r.description, HasSubstr("lib_function@@VER_1 in "));
}

TEST(TargetSymbols, OnlyTheDefaultVersionBinds) {
  TargetSymbols target = make_target();
  ResolvedSymbol r = target.resolve("lib_versioned", 0);
  // lib_versioned@@VER_2 is lib_versioned_new, not lib_versioned@VER_1.
  EXPECT_EQ(r.address, RemoteAddr(kLibBias + symbol_of(files().lib.symbols(), "lib_versioned_new").value));
  EXPECT_NE(r.address, RemoteAddr(kLibBias + symbol_of(files().lib.symbols(), "lib_versioned_old").value));
  EXPECT_THAT(r.description, HasSubstr("lib_versioned@@VER_2"));
}

TEST(TargetSymbols, ExecutableInterposesLibrary) {
  TargetSymbols target = make_target();
  EXPECT_EQ(target.resolve("shared_name", 0).address, exe_symbol("shared_name"));
  // Also when patching the library: the scope starts with the executable.
  EXPECT_EQ(target.resolve("shared_name", 1).address, exe_symbol("shared_name"));
}

TEST(TargetSymbols, GlobalBeatsEarlierWeak) {
  TargetSymbols target = make_target();
  ResolvedSymbol r = target.resolve("weak_or_strong", 0);
  EXPECT_EQ(r.object, kLib);
  EXPECT_EQ(r.address, RemoteAddr(kLibBias + symbol_of(files().lib.dynamic_symbols(), "weak_or_strong").value));
}

TEST(TargetSymbols, ExecutableSymtabOnlyForThePatchedObject) {
  TargetSymbols target = make_target();
  // a_count is not exported (no -rdynamic): a patch of the library cannot see it.
  EXPECT_EQ(target.resolve("a_count", 0).address, exe_symbol("a_count"));
  EXPECT_THAT(error_of([&] { target.resolve("a_count", 1); }), HasSubstr("undefined symbol 'a_count'"));
}

TEST(TargetSymbols, HiddenLibrarySymbolsAreNotVisibleToOthers) {
  TargetSymbols target = make_target();
  // lib_versioned_old is local (version script) in libfixture.so's .symtab; as a
  // static it is found only when patching the library itself.
  EXPECT_THAT(error_of([&] { target.resolve("lib_versioned_old", 0); }), HasSubstr("undefined symbol"));
  EXPECT_EQ(target.resolve("lib_versioned_old", 1).address,
            RemoteAddr(kLibBias + symbol_of(files().lib.symbols(), "lib_versioned_old").value));
}

TEST(TargetSymbols, AmbiguousStaticNamesBothFiles) {
  TargetSymbols target = make_target();
  EXPECT_THAT(error_of([&] { target.resolve("count", 0); }),
              HasSubstr("symbol 'count' is defined in several files of link_fixture_exe (target-a.c, target-b.c): "
                        "bind one with SUTURE_BIND(local, file.c:count)"));
}

TEST(TargetSymbols, StaticByFile) {
  TargetSymbols target = make_target();
  RemoteAddr a;
  RemoteAddr b;
  for (const elf::Symbol& s : files().exe.symbols()) {
    if (s.name != "count") continue;
    if (s.file == "target-a.c") a = RemoteAddr(kExeBias + s.value);
    if (s.file == "target-b.c") b = RemoteAddr(kExeBias + s.value);
  }
  ASSERT_FALSE(a.is_null());
  ASSERT_FALSE(b.is_null());
  EXPECT_EQ(target.resolve_in_object("count", "target-a.c", 0).address, a);
  EXPECT_EQ(target.resolve_in_object("count", "target-b.c", 0).address, b);
  EXPECT_EQ(target.resolve_in_object("count", "src/fixtures/target-b.c", 0).address, b);  // a path suffix
  EXPECT_THAT(target.resolve_in_object("count", "target-b.c", 0).description, HasSubstr("count (target-b.c) in "));
  EXPECT_THAT(error_of([&] { target.resolve_in_object("count", "target-c.c", 0); }),
              HasSubstr("symbol 'count' of target-c.c not found in link_fixture_exe"));
  // A global by name, no file needed.
  EXPECT_EQ(target.resolve_in_object("exe_global", "", 0).address, exe_symbol("exe_global"));
}

TEST(TargetSymbols, UndefinedNamesSymbolAndObjects) {
  TargetSymbols target = make_target();
  EXPECT_EQ(error_of([&] { target.resolve("does_not_exist", 0); }),
            "undefined symbol 'does_not_exist' (not found in the target's objects: link_fixture_exe, libfixture.so, "
            "libstdc++.so.6, libgcc_s.so.1, libc.so.6, ld-linux-x86-64.so.2)");
  EXPECT_FALSE(target.find("does_not_exist", 0).has_value());
}

TEST(TargetSymbols, IfuncRunsTheResolver) {
  IfuncLog log;
  TargetSymbols target = make_target({}, &log);
  const elf::Symbol& memcpy_symbol = symbol_of(files().libc.dynamic_symbols(), "memcpy", "GLIBC_2.14");
  ASSERT_EQ(memcpy_symbol.type, STT_GNU_IFUNC);
  ResolvedSymbol r = target.resolve("memcpy", 0);
  const RemoteAddr resolver(kLibcBias + memcpy_symbol.value);
  ASSERT_EQ(log.resolvers.size(), 1u);
  EXPECT_EQ(log.resolvers[0], resolver);
  EXPECT_EQ(r.address, resolver + kIfuncDelta);
  EXPECT_EQ(r.type, STT_FUNC);
  EXPECT_THAT(r.description, HasSubstr("memcpy@@GLIBC_2.14 in /lib/x86_64-linux-gnu/libc.so.6"));
}

TEST(TargetSymbols, ThreadLocalIsAnOffsetInItsBlock) {
  TargetSymbols target = make_target();
  ResolvedSymbol r = target.resolve("lib_tls", 0);
  EXPECT_TRUE(r.tls);
  EXPECT_EQ(r.type, STT_TLS);
  EXPECT_EQ(r.object, kLib);
  EXPECT_EQ(r.address, RemoteAddr(symbol_of(files().lib.dynamic_symbols(), "lib_tls").value));
  ResolvedSymbol e = target.resolve("exe_tls", 0);
  EXPECT_TRUE(e.tls);
  EXPECT_EQ(e.address, RemoteAddr(symbol_of(files().exe.symbols(), "exe_tls").value));
}

TEST(TargetSymbols, LdsoProvidesTlsGetAddr) {
  TargetSymbols target = make_target();
  ResolvedSymbol r = target.resolve("__tls_get_addr", 0);
  EXPECT_EQ(r.object, kLdso);
  EXPECT_EQ(r.address, RemoteAddr(kLdsoBias + symbol_of(files().ldso.dynamic_symbols(), "__tls_get_addr").value));
}

TEST(TargetSymbols, StrippedExecutableUsesItsDebugFile) {
  const elf::ElfFile stripped = elf::ElfFile::open(SUTURE_FIXTURE_STRIPPED_EXE);
  const elf::ElfFile debug = elf::ElfFile::open(SUTURE_FIXTURE_STRIPPED_EXE ".debug");
  ASSERT_LE(stripped.symbols().size(), 1u);
  TargetSymbols target({{.path = "/usr/bin/stripped", .bias = RemoteAddr(kExeBias), .file = &stripped,
                         .debug_file = &debug}},
                       nullptr);
  EXPECT_EQ(target.resolve("a_count", 0).address, exe_symbol("a_count"));
  EXPECT_THAT(target.resolve_in_object("count", "target-b.c", 0).description,
              HasSubstr("count (target-b.c) in /usr/bin/stripped"));
  TargetSymbols without_debug({{.path = "/usr/bin/stripped", .bias = RemoteAddr(kExeBias), .file = &stripped}},
                              nullptr);
  EXPECT_THAT(error_of([&] { without_debug.resolve("a_count", 0); }),
              HasSubstr("undefined symbol 'a_count' (not found in the target's objects: stripped)"));
}

TEST(TargetSymbols, EveryLibcExportResolvesQuickly) {
  TargetSymbols target = make_target();
  size_t resolved = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const elf::Symbol& s : files().libc.dynamic_symbols()) {
    if (!s.defined() || s.name.empty() || s.bind == STB_LOCAL || s.type == STT_GNU_IFUNC) continue;
    if (target.find(s.name, 0)) ++resolved;
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GT(resolved, 2000u);
  EXPECT_LT(elapsed, std::chrono::milliseconds(500));  // indexed: a few ms; a scan per lookup: seconds
}

}  // namespace
}  // namespace suture::link
