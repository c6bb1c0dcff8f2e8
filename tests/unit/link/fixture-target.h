// The target the link tests resolve against: the fixture executable and its
// library, built with the tests, plus the system's C++ runtime, libc and dynamic
// linker, each at a made-up bias (nothing runs; only addresses matter).
#pragma once

#include <elf.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"
#include "elf/elf-file.h"
#include "link/target-symbols.h"

namespace suture::link::fixtures {

inline constexpr uint64_t kExeBias = 0x555555554000;   // a PIE executable
inline constexpr uint64_t kLowExeBias = 0x400000;      // the same, as if it were not PIE
inline constexpr uint64_t kLibBias = 0x7ffff7f80000;   // libfixture.so
inline constexpr uint64_t kCxxBias = 0x7ffff7800000;   // libstdc++.so.6
inline constexpr uint64_t kGccBias = 0x7ffff7b00000;   // libgcc_s.so.1
inline constexpr uint64_t kLibcBias = 0x7ffff7c00000;  // libc.so.6
inline constexpr uint64_t kLdsoBias = 0x7ffff7fc0000;  // ld-linux-x86-64.so.2
inline constexpr int64_t kExeTlsOffset = 0x10;         // static TLS: block at %fs:-0x10
inline constexpr int64_t kLibTlsOffset = 0x30;
inline constexpr int64_t kLibcTlsOffset = 0x90;
// What our fake IFUNC resolvers return: the resolver's address plus this.
inline constexpr int64_t kIfuncDelta = 0x10000;

inline constexpr const char* kCxxPath = "/lib/x86_64-linux-gnu/libstdc++.so.6";
inline constexpr const char* kGccPath = "/lib/x86_64-linux-gnu/libgcc_s.so.1";
inline constexpr const char* kLibcPath = "/lib/x86_64-linux-gnu/libc.so.6";
inline constexpr const char* kLdsoPath = "/lib64/ld-linux-x86-64.so.2";
// Indexes in make_target()'s objects.
enum : size_t { kExe, kLib, kCxx, kGcc, kLibc, kLdso };

struct FixtureFiles {
  elf::ElfFile exe = elf::ElfFile::open(SUTURE_FIXTURE_EXE);
  elf::ElfFile lib = elf::ElfFile::open(SUTURE_FIXTURE_LIB);
  elf::ElfFile cxx = elf::ElfFile::open(kCxxPath);
  elf::ElfFile gcc = elf::ElfFile::open(kGccPath);
  elf::ElfFile libc = elf::ElfFile::open(kLibcPath);
  elf::ElfFile ldso = elf::ElfFile::open(kLdsoPath);
};

inline const FixtureFiles& files() {
  static const FixtureFiles f;
  return f;
}

struct TargetOptions {
  uint64_t exe_bias = kExeBias;
  std::optional<int64_t> lib_tls_offset;  // unset: libfixture.so's TLS is dynamic (dlopen'ed)
};

// Records the IFUNC resolvers the linker asked to run.
struct IfuncLog {
  std::vector<RemoteAddr> resolvers;
};

inline TargetSymbols make_target(const TargetOptions& options = {}, IfuncLog* log = nullptr) {
  const FixtureFiles& f = files();
  std::vector<TargetObject> objects = {
      {.path = SUTURE_FIXTURE_EXE, .bias = RemoteAddr(options.exe_bias), .file = &f.exe, .tls_modid = 1,
       .tls_offset = kExeTlsOffset},
      {.path = SUTURE_FIXTURE_LIB, .bias = RemoteAddr(kLibBias), .file = &f.lib, .tls_modid = 2,
       .tls_offset = options.lib_tls_offset},
      // In link_map order of a C++ program: the C++ runtime before libc.
      {.path = kCxxPath, .bias = RemoteAddr(kCxxBias), .file = &f.cxx, .tls_modid = 3, .tls_offset = 0x50},
      {.path = kGccPath, .bias = RemoteAddr(kGccBias), .file = &f.gcc},
      {.path = kLibcPath, .bias = RemoteAddr(kLibcBias), .file = &f.libc, .tls_modid = 4, .tls_offset = kLibcTlsOffset},
      {.path = kLdsoPath, .bias = RemoteAddr(kLdsoBias), .file = &f.ldso},
  };
  return TargetSymbols(std::move(objects), [log](RemoteAddr resolver) {
    if (log) log->resolvers.push_back(resolver);
    return resolver + kIfuncDelta;
  });
}

// A symbol of `file` by name (and version, for .dynsym), or an error.
inline const elf::Symbol& symbol_of(const std::vector<elf::Symbol>& table, std::string_view name,
                                    std::string_view version = {}) {
  for (const elf::Symbol& s : table)
    if (s.name == name && s.defined() && (version.empty() || s.version == version)) return s;
  fail("test fixture: no symbol '{}' {}", name, version);
}

// Where the target's symbol `name` of the executable is, at bias `bias`.
inline RemoteAddr exe_symbol(std::string_view name, uint64_t bias = kExeBias) {
  return RemoteAddr(bias + symbol_of(files().exe.symbols(), name).value);
}

}  // namespace suture::link::fixtures
