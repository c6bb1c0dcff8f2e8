// The patch file (.sut): what `suture pack` and `suture build` write and what
// `suture apply` and `suture inspect` read. It is the fuzzed surface: parse()
// trusts nothing and checks every length, offset, index and cross-reference
// before anything else sees the data.
//
// Layout (all integers little-endian):
//   magic      8 bytes  "SUTUREPT"
//   version    u32      1
//   meta_len   u32      length of the metadata (UTF-8 JSON), at most 16 MiB
//   object_len u64      length of the relocatable ELF object, at most 256 MiB
//   checksum   u64      FNV-1a 64 of everything that follows the header
//   metadata   meta_len bytes
//   object     object_len bytes (ELF64, ET_REL, EM_X86_64)
// The checksum catches truncation and corruption; it is not a signature.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace suture::patchfile {

// One function of the target replaced by one function of the patch object.
struct Replacement {
  std::string spelling;     // as the author wrote it: "parse", "a.c:bump", "ns::f(int)"
  std::string symbol;       // the target's symbol name (mangled for C++)
  std::string file;         // source file of a static function, empty for globals
  uint64_t target_value = 0;  // st_value of the old function in the target object
  uint64_t target_size = 0;   // st_size of the old function
  std::string new_symbol;   // the defining symbol in the patch object
  // Caller-saved registers the old function provably leaves alone and the new one
  // may write (bits 0-15: rax..r15 in hardware order, 16-31: xmm0-15). Callers
  // compiled with interprocedural register allocation may keep values in them
  // across the call, so the redirect goes through a thunk that preserves them.
  uint32_t preserve = 0;
  // Bytes of stack-passed arguments the thunk copies for the new function.
  uint64_t stack_argument_bytes = 0;
};

// The registers `preserve` may name: rax rcx rdx rsi rdi r8-r11 and xmm0-15.
inline constexpr uint32_t kPreservableRegisters = 0xffff0fc7u;
inline constexpr uint64_t max_stack_argument_bytes = 4096;

// An undefined symbol of the patch object bound to a particular target symbol.
struct Binding {
  std::string local;   // the patch object's undefined symbol
  std::string symbol;  // the target's symbol name
  std::string file;    // its source file, empty for any
};

struct Patch {
  uint32_t format_version = 1;
  std::string id;               // 16 hex digits, derived from the contents
  std::string name;             // a human label (the object's file name by default)
  std::string target_build_id;  // hex NT_GNU_BUILD_ID of the object to patch
  std::string target_name;      // file name (or soname) of that object, for messages
  uint64_t created_unix = 0;
  std::vector<Replacement> replacements;
  std::vector<Binding> bindings;
  std::vector<uint8_t> object;  // the relocatable ELF object
};

// Serialises a patch (fills nothing in: call assign_id() first).
std::vector<uint8_t> serialize(const Patch& patch);
// Parses and validates; throws Error("ORIGIN: what is wrong") for any defect,
// including an object that is not a sane x86-64 relocatable ELF file or
// replacements that name symbols the object does not define.
Patch parse(std::span<const uint8_t> bytes, std::string_view origin);

// Sets patch.id from the object and the metadata that affects behaviour.
void assign_id(Patch& patch);

Patch read_file(const std::string& path);
void write_file(const Patch& patch, const std::string& path);

// True if the first bytes look like a patch file (used to pick files in a directory).
bool looks_like_patch(std::span<const uint8_t> first_bytes);

}  // namespace suture::patchfile
