// x86-64 relocations, one at a time: the arithmetic of the psABI (4.4, and the
// TLS supplement) applied to a local working copy of a section whose final
// address is known. The caller decides where GOT slots, TLS pairs and far-call
// stubs live; this file only computes values, checks that they fit their field,
// and writes them (and, for TLS descriptors, rewrites the instructions).
//
// Every kind is listed with its formula in x86-64-relocations.cc. The names are
// the psABI's:
//   S    the symbol's final address; for a thread-local symbol, its offset in
//        its module's TLS block (st_value in the defining object)
//   A    the addend
//   P    the final address of the place being patched
//   Z    the symbol's size
//   GOT  the final address of our GOT (the table of far references in rodata)
//   G    the offset from GOT of the slot this relocation uses: the symbol's
//        address slot, its TLS {module, offset} pair, or its TP-offset slot
//   L    where a call through the "PLT" lands: S itself when it is within rel32
//        reach, else a far-call stub (jmp *slot(%rip))
//   TP   for a thread-local symbol in static TLS: the offset of its module's
//        block from the thread pointer (-l_tls_offset), so that S + TP is the
//        symbol's address relative to %fs:0
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace suture::link {

// Where one relocation applies, and what names it in messages.
struct RelocationSite {
  std::string_view object;   // "fix.o"
  std::string_view section;  // ".text.f"
  uint64_t offset = 0;       // of the place, within the section
  uint32_t type = 0;         // R_X86_64_*
  std::string_view symbol;   // the symbol referred to (a section's name for STT_SECTION)
};

// The psABI's quantities for one relocation (see above).
struct RelocationValues {
  uint64_t S = 0;
  int64_t A = 0;
  uint64_t P = 0;
  uint64_t Z = 0;
  uint64_t GOT = 0;
  int64_t G = 0;
  uint64_t L = 0;
  std::optional<int64_t> TP;  // unset: the symbol is not in static TLS
};

// Applies one relocation to `section` (the local copy of the section the site
// lies in). Throws Error("fix.o: .text.f+0x12: R_X86_64_PC32 against 'x': ...")
// when the place lies outside the section, when the value does not fit its
// field, when the instructions a TLS relaxation rewrites are not the expected
// ones, and for relocation types we do not handle.
void apply_relocation(std::span<uint8_t> section, const RelocationSite& site, const RelocationValues& values);

// "fix.o: .text.f+0x12: R_X86_64_PC32 against 'x'", the start of every message
// about a relocation.
std::string describe(const RelocationSite& site);
// "R_X86_64_PC32"; "R_X86_64_<n>" for numbers without a name.
std::string relocation_name(uint32_t type);

// What a relocation type needs from the linker besides S, A and P.
enum class SlotKind {
  none,
  address,    // an 8-byte GOT slot holding S
  tls_pair,   // a 16-byte {module id, offset} pair for __tls_get_addr
  tp_offset,  // an 8-byte slot holding S + TP (initial exec)
};
SlotKind slot_kind(uint32_t type);
// True for relocations whose value is the distance to a thread-local symbol's
// GOT entry or block, i.e. that refer to TLS symbols only.
bool is_tls_relocation(uint32_t type);
// True for PC32/PLT32: a call through them may need a far-call stub.
bool may_need_stub(uint32_t type);
// True if v fits a signed 32-bit field (rel32, disp32).
constexpr bool fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

// A far-call stub: `jmp *slot(%rip)`, padded with int3.
inline constexpr size_t kStubSize = 8;
std::array<uint8_t, kStubSize> encode_far_stub(uint64_t stub, uint64_t slot);

}  // namespace suture::link
