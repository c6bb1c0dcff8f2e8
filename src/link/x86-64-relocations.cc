// Applying one x86-64 relocation.
//
// Each kind is computed in 64-bit wrapping arithmetic from the psABI's formula,
// then stored through a store that checks the field's range: a signed field
// (rel32, disp32, the sign-extended imm32 of 32S) must hold the value exactly as
// an intN_t; an unsigned one (R_X86_64_32, SIZE32) as a uintN_t; the 8- and 16-bit
// absolute kinds accept either reading, as GNU ld does. Nothing is written when a
// check fails, so a failed link leaves no half-patched field to confuse whoever
// reads the buffer next.
//
// TLS descriptors (-mtls-dialect=gnu2) are the one place where instructions
// change: a patch cannot install descriptors in the target's DTV machinery, so a
// descriptor access is relaxed to initial exec, which needs the symbol in static
// TLS. General and local dynamic accesses are left as they are (the caller gives
// them a {module, offset} pair and __tls_get_addr does the rest); initial-exec
// GOT loads are left as loads (the caller fills the slot). GOTPCRELX loads are not
// relaxed to lea: the slot always exists, and a load through it is correct.
#include "link/x86-64-relocations.h"

#include <elf.h>

#include <cstring>

#include <fmt/format.h>

#include "common/error.h"

namespace suture::link {
namespace {

// The bytes of the place, after checking that `width` bytes fit in the section.
uint8_t* place(std::span<uint8_t> section, const RelocationSite& site, size_t width) {
  if (site.offset > section.size() || section.size() - site.offset < width)
    fail("{}: the place ({} bytes) lies outside its section of {:#x} bytes", describe(site), width,
         section.size());
  return section.data() + site.offset;
}

template <typename T>
void store(uint8_t* at, T value) {
  std::memcpy(at, &value, sizeof value);  // x86-64 is little-endian, as is ELFCLASS64 for EM_X86_64
}

void store64(std::span<uint8_t> section, const RelocationSite& site, uint64_t value) {
  store(place(section, site, 8), value);
}

// A PC-relative field: the value must fit as a signed integer of `bits`.
void store_pc_relative(std::span<uint8_t> section, const RelocationSite& site, int bits, int64_t value,
                       uint64_t P, std::string_view hint = {}) {
  const int64_t low = -(int64_t{1} << (bits - 1));
  const int64_t high = (int64_t{1} << (bits - 1)) - 1;
  if (value < low || value > high)
    fail("{}: target out of range ({:#x} is {} bytes from {:#x}){}", describe(site),
         P + static_cast<uint64_t>(value), value, P, hint);
  uint8_t* at = place(section, site, static_cast<size_t>(bits / 8));
  if (bits == 32) store(at, static_cast<int32_t>(value));
  else if (bits == 16) store(at, static_cast<int16_t>(value));
  else store(at, static_cast<int8_t>(value));
}

enum class Range { signed_only, unsigned_only, either };

// An absolute field of `bits` (< 64).
void store_absolute(std::span<uint8_t> section, const RelocationSite& site, int bits, Range range,
                    uint64_t value, std::string_view hint = {}) {
  const auto v = static_cast<int64_t>(value);
  const int64_t signed_low = -(int64_t{1} << (bits - 1));
  const int64_t signed_high = (int64_t{1} << (bits - 1)) - 1;
  const uint64_t unsigned_high = (uint64_t{1} << bits) - 1;
  bool fits = false;
  switch (range) {
    case Range::signed_only: fits = v >= signed_low && v <= signed_high; break;
    case Range::unsigned_only: fits = value <= unsigned_high; break;
    case Range::either: fits = (v >= signed_low && v <= signed_high) || value <= unsigned_high; break;
  }
  if (!fits) fail("{} ({:#x}) does not fit{}", describe(site), value, hint);
  uint8_t* at = place(section, site, static_cast<size_t>(bits / 8));
  if (bits == 32) store(at, static_cast<uint32_t>(value));
  else if (bits == 16) store(at, static_cast<uint16_t>(value));
  else store(at, static_cast<uint8_t>(value));
}

int64_t require_static_tls(const RelocationSite& site, const RelocationValues& values, std::string_view fix) {
  if (!values.TP) fail("{}: the thread-local symbol is not in static TLS; {}", describe(site), fix);
  return *values.TP;
}

}  // namespace

std::string describe(const RelocationSite& site) {
  if (site.symbol.empty())
    return fmt::format("{}: {}+{:#x}: {}", site.object, site.section, site.offset, relocation_name(site.type));
  return fmt::format("{}: {}+{:#x}: {} against '{}'", site.object, site.section, site.offset,
                     relocation_name(site.type), site.symbol);
}

// Kinds newer than Debian 12's <elf.h> (the APX CODE_4_* forms) are not emitted
// by its toolchain either; they are named by number.
std::string relocation_name(uint32_t type) {
  switch (type) {
#define SUTURE_NAME(kind) \
  case R_X86_64_##kind: return "R_X86_64_" #kind;
    SUTURE_NAME(NONE) SUTURE_NAME(64) SUTURE_NAME(PC32) SUTURE_NAME(GOT32) SUTURE_NAME(PLT32)
    SUTURE_NAME(COPY) SUTURE_NAME(GLOB_DAT) SUTURE_NAME(JUMP_SLOT) SUTURE_NAME(RELATIVE)
    SUTURE_NAME(GOTPCREL) SUTURE_NAME(32) SUTURE_NAME(32S) SUTURE_NAME(16) SUTURE_NAME(PC16)
    SUTURE_NAME(8) SUTURE_NAME(PC8) SUTURE_NAME(DTPMOD64) SUTURE_NAME(DTPOFF64) SUTURE_NAME(TPOFF64)
    SUTURE_NAME(TLSGD) SUTURE_NAME(TLSLD) SUTURE_NAME(DTPOFF32) SUTURE_NAME(GOTTPOFF)
    SUTURE_NAME(TPOFF32) SUTURE_NAME(PC64) SUTURE_NAME(GOTOFF64) SUTURE_NAME(GOTPC32)
    SUTURE_NAME(GOT64) SUTURE_NAME(GOTPCREL64) SUTURE_NAME(GOTPC64) SUTURE_NAME(GOTPLT64)
    SUTURE_NAME(PLTOFF64) SUTURE_NAME(SIZE32) SUTURE_NAME(SIZE64) SUTURE_NAME(GOTPC32_TLSDESC)
    SUTURE_NAME(TLSDESC_CALL) SUTURE_NAME(TLSDESC) SUTURE_NAME(IRELATIVE) SUTURE_NAME(RELATIVE64)
    SUTURE_NAME(GOTPCRELX) SUTURE_NAME(REX_GOTPCRELX)
#undef SUTURE_NAME
    default: return fmt::format("R_X86_64_<{}>", type);
  }
}

SlotKind slot_kind(uint32_t type) {
  switch (type) {
    case R_X86_64_GOT32:
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
    case R_X86_64_GOTPCREL64:
    case R_X86_64_GOT64:
    case R_X86_64_GOTPLT64:
      return SlotKind::address;
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
      return SlotKind::tls_pair;
    case R_X86_64_GOTTPOFF:
    case R_X86_64_GOTPC32_TLSDESC:
      return SlotKind::tp_offset;
    default:
      return SlotKind::none;
  }
}

bool is_tls_relocation(uint32_t type) {
  switch (type) {
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
    case R_X86_64_DTPOFF32:
    case R_X86_64_DTPOFF64:
    case R_X86_64_GOTTPOFF:
    case R_X86_64_TPOFF32:
    case R_X86_64_TPOFF64:
    case R_X86_64_GOTPC32_TLSDESC:
    case R_X86_64_TLSDESC_CALL:
      return true;
    default:
      return false;
  }
}

bool may_need_stub(uint32_t type) { return type == R_X86_64_PLT32 || type == R_X86_64_PC32; }

std::array<uint8_t, kStubSize> encode_far_stub(uint64_t stub, uint64_t slot) {
  const auto rel32 = static_cast<int64_t>(slot - (stub + 6));
  if (!fits_int32(rel32))
    fail("far-call stub at {:#x}: its slot at {:#x} is out of rel32 range", stub, slot);
  const auto r = static_cast<uint32_t>(rel32);
  return {
      0xff, 0x25,                                          // jmp *slot(%rip)
      static_cast<uint8_t>(r), static_cast<uint8_t>(r >> 8),  //   rel32 = slot - (stub + 6)
      static_cast<uint8_t>(r >> 16), static_cast<uint8_t>(r >> 24),
      0xcc, 0xcc,  // int3; int3 (never reached)
  };
}

void apply_relocation(std::span<uint8_t> section, const RelocationSite& site, const RelocationValues& values) {
  const uint64_t S = values.S;
  const uint64_t A = static_cast<uint64_t>(values.A);  // wrapping arithmetic; reinterpreted when stored
  const uint64_t P = values.P;
  const uint64_t Z = values.Z;
  const uint64_t GOT = values.GOT;
  const uint64_t G = static_cast<uint64_t>(values.G);
  const uint64_t L = values.L;
  auto pc32 = [&](uint64_t value, std::string_view hint = {}) {
    store_pc_relative(section, site, 32, static_cast<int64_t>(value), P, hint);
  };

  switch (site.type) {
    // Nothing.
    case R_X86_64_NONE:
      return;

    // S + A, in a 64-bit field: always fits.
    case R_X86_64_64:
    case R_X86_64_DTPOFF64:  // S is the offset within the module's TLS block
      store64(section, site, S + A);
      return;

    // S + A, zero-extended (32) or sign-extended (32S) by the instruction. A
    // patch compiled without -fPIC names target addresses this way; they fit
    // only when everything lies in the low 2 GiB (non-PIE executables).
    case R_X86_64_32:
      store_absolute(section, site, 32, Range::unsigned_only, S + A, "; compile the patch with -fPIC");
      return;
    case R_X86_64_32S:
      store_absolute(section, site, 32, Range::signed_only, S + A, "; compile the patch with -fPIC");
      return;
    // S + A in 16 or 8 bits, read as signed or unsigned by the code.
    case R_X86_64_16:
      store_absolute(section, site, 16, Range::either, S + A);
      return;
    case R_X86_64_8:
      store_absolute(section, site, 8, Range::either, S + A);
      return;

    // S + A - P. Calls to far functions never get here with their target:
    // the caller gives L (a stub) for those through PLT32. Error: the data
    // lies beyond ±2 GiB, which -fPIC turns into a GOT load.
    case R_X86_64_PC32:
      pc32(S + A - P, "; compile the patch with -fPIC");
      return;
    case R_X86_64_PC16:
      store_pc_relative(section, site, 16, static_cast<int64_t>(S + A - P), P);
      return;
    case R_X86_64_PC8:
      store_pc_relative(section, site, 8, static_cast<int64_t>(S + A - P), P);
      return;
    case R_X86_64_PC64:
      store64(section, site, S + A - P);
      return;

    // L + A - P: L is S, or the far-call stub when S is out of reach.
    case R_X86_64_PLT32:
      pc32(L + A - P);
      return;

    // G + GOT + A - P: the distance to the symbol's GOT slot. Error: the
    // table is out of reach of the code (placement too spread out).
    case R_X86_64_GOTPCREL:
    case R_X86_64_GOTPCRELX:
    case R_X86_64_REX_GOTPCRELX:
      pc32(G + GOT + A - P);
      return;
    // G + GOT - P + A, in 64 bits (large code model).
    case R_X86_64_GOTPCREL64:
      store64(section, site, G + GOT + A - P);
      return;
    // G + A: the slot's offset from GOT.
    case R_X86_64_GOT32:
      store_absolute(section, site, 32, Range::signed_only, G + A);
      return;
    case R_X86_64_GOT64:
    case R_X86_64_GOTPLT64:
      store64(section, site, G + A);
      return;
    // GOT + A - P: the distance to GOT itself (_GLOBAL_OFFSET_TABLE_).
    case R_X86_64_GOTPC32:
      pc32(GOT + A - P);
      return;
    case R_X86_64_GOTPC64:
      store64(section, site, GOT + A - P);
      return;
    // S + A - GOT, and L - GOT + A: addresses relative to GOT (large model).
    case R_X86_64_GOTOFF64:
      store64(section, site, S + A - GOT);
      return;
    case R_X86_64_PLTOFF64:
      store64(section, site, L + A - GOT);
      return;

    // Z + A: the symbol's size.
    case R_X86_64_SIZE32:
      store_absolute(section, site, 32, Range::unsigned_only, Z + A);
      return;
    case R_X86_64_SIZE64:
      store64(section, site, Z + A);
      return;

    // G + GOT + A - P, where G is a {module id, offset} pair handed to
    // __tls_get_addr by the call that follows (general and local dynamic).
    case R_X86_64_TLSGD:
    case R_X86_64_TLSLD:
      pc32(G + GOT + A - P);
      return;
    // S + A: the offset within the module's block (local dynamic).
    case R_X86_64_DTPOFF32:
      store_absolute(section, site, 32, Range::signed_only, S + A);
      return;
    // G + GOT + A - P, where G holds S + TP (initial exec).
    case R_X86_64_GOTTPOFF:
      pc32(G + GOT + A - P);
      return;
    // S + TP + A: the offset from the thread pointer (local exec). Error: the
    // symbol is not in static TLS.
    case R_X86_64_TPOFF32: {
      const uint64_t TP = static_cast<uint64_t>(require_static_tls(site, values, "compile the patch with -fPIC"));
      store_absolute(section, site, 32, Range::signed_only, S + TP + A);
      return;
    }
    case R_X86_64_TPOFF64: {
      const uint64_t TP = static_cast<uint64_t>(require_static_tls(site, values, "compile the patch with -fPIC"));
      store64(section, site, S + TP + A);
      return;
    }

    // TLS descriptors, relaxed to initial exec: G + GOT + A - P where G holds
    // S + TP, and the load replaces the address computation:
    //   48 8d 05 rel32   lea x@tlsdesc(%rip),%rax
    // becomes
    //   48 8b 05 rel32   mov x@gottpoff(%rip),%rax
    // Errors: the symbol is in dynamic TLS; the instruction is not that lea.
    case R_X86_64_GOTPC32_TLSDESC: {
      require_static_tls(site, values, "compile the patch with -mtls-dialect=gnu");
      if (site.offset < 3) fail("{}: no room for the lea before the place", describe(site));
      uint8_t* insn = place(section, site, 4) - 3;
      if (insn[0] != 0x48 || insn[1] != 0x8d || insn[2] != 0x05)
        fail("{}: expected lea x@tlsdesc(%rip),%rax (48 8d 05), found {:02x} {:02x} {:02x}", describe(site),
             insn[0], insn[1], insn[2]);
      pc32(G + GOT + A - P);
      insn[1] = 0x8b;
      return;
    }
    //   ff 10   call *x@tlscall(%rax)
    // becomes
    //   66 90   xchg %ax,%ax
    // since %rax already holds the offset from the thread pointer.
    case R_X86_64_TLSDESC_CALL: {
      require_static_tls(site, values, "compile the patch with -mtls-dialect=gnu");
      uint8_t* insn = place(section, site, 2);
      if (insn[0] != 0xff || insn[1] != 0x10)
        fail("{}: expected call *(%rax) (ff 10), found {:02x} {:02x}", describe(site), insn[0], insn[1]);
      insn[0] = 0x66;
      insn[1] = 0x90;
      return;
    }

    // Dynamic relocations (COPY, GLOB_DAT, JUMP_SLOT, RELATIVE, DTPMOD64,
    // TLSDESC, IRELATIVE...) never appear in a relocatable object.
    default:
      fail("{}: unsupported relocation type {}", describe(site), site.type);
  }
}

}  // namespace suture::link
