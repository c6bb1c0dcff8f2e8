// Encoding the preserving thunk.
//
// The problem. A caller built with -fipa-ra may keep values in caller-saved
// registers across a call to a function that provably does not write them. When
// the replacement writes some of them, the redirect must keep them for it: the
// old entry jumps here instead of to the new function, and this code saves the
// registers, calls the new function as if it were the caller, restores and
// returns.
//
// The frame. We are entered by a jmp, so rsp (E) points at the caller's return
// address and E = 8 (mod 16); stack arguments start at E + 8. We move rsp down by
// F bytes to C = E - F and lay out, from C upwards:
//
//     C                 copy of the stack arguments (A bytes, A = round_up(n, 8))
//     C + A             xmm saves, 16 bytes each (movdqu: no alignment needed)
//     C + A + 16x       GPR saves, 8 bytes each
//     ...               padding up to E
//     E                 the caller's return address, then its stack arguments
//
// F is the smallest size >= A + 16x + 8g with F = 8 (mod 16), so C is 16-byte
// aligned at our `call`; the new function then finds its return address at C - 8
// and its stack arguments at C, exactly as the psABI puts them.
//
// Choices.
//  - The thunk may write no register the caller could rely on: any register not
//    in `preserve` may be one the new function does not write either, so it is
//    still live in the caller. Hence no scratch register for the argument copy:
//    `push [rsp+s]; pop [rsp+d]` moves memory to memory (pop computes its address
//    after incrementing rsp, so both displacements are relative to C).
//  - lea instead of sub/add to move rsp, so the new function's flags reach the
//    caller unchanged (nothing needs them; it costs nothing).
//  - Every rsp-relative operand takes a 32-bit displacement, so the size depends
//    only on what is saved and copied, not on the frame's size.
//  - All saved data stays at or above rsp for the thunk's whole run: a signal or
//    the new function's red zone cannot overwrite it.
//
// Unwind information. A throw (or a backtrace) that crosses the thunk must step
// from the new function's frame through ours to the caller, so every thunk has
// an FDE: CFA = rsp + 8 at entry, rsp + F + 8 after the first lea (rsp + F + 16
// between each push and its pop while copying arguments), back to rsp + 8 after
// the last lea; each saved GPR is described at its slot, so an unwinder gives
// the caller the values a normal return would have (libgcc restores only GPRs,
// so the xmm saves are left undescribed). The FDEs of a patch's thunks share one
// CIE and form one .eh_frame after the thunks' code, which the engine registers
// with the patch's own tables.
//
// Rejected alternatives.
//  - Saving every caller-saved register always: a fixed cost on every call and a
//    thunk even when nothing needs one.
//  - Copying the arguments with rep movsq: it needs rsi, rdi and rcx, argument
//    registers that must reach the new function intact.
//  - Returning through the new function into the caller (tail-jumping after
//    pushing a fake return address into the thunk): the same frame, but the
//    restore must happen after the new function returns, so the thunk has to be
//    on the call chain either way.

#include "redirect/preserving-thunk.h"

#include <bit>
#include <limits>

#include "common/error.h"

namespace suture::redirect {
namespace {

constexpr uint64_t kGprSave = 8;
constexpr uint64_t kXmmSave = 16;

struct Layout {
  uint64_t argument_bytes;  // A
  uint64_t xmm_at;          // C + xmm_at: first xmm save
  uint64_t gpr_at;          // C + gpr_at: first GPR save
  uint64_t frame;           // F
};

Layout layout(RegisterSet preserve, uint64_t stack_argument_bytes) {
  if (preserve & gpr_bit(reg::kRsp)) fail("a preserving thunk cannot preserve rsp");
  if (stack_argument_bytes > kMaxThunkStackArgumentBytes) {
    fail("a preserving thunk copies at most {} bytes of stack arguments, not {}", kMaxThunkStackArgumentBytes,
         stack_argument_bytes);
  }
  Layout l;
  l.argument_bytes = (stack_argument_bytes + 7) & ~uint64_t{7};
  l.xmm_at = l.argument_bytes;
  l.gpr_at = l.xmm_at + kXmmSave * std::popcount(preserve & kAllXmms);
  uint64_t used = l.gpr_at + kGprSave * std::popcount(preserve & kAllGprs);
  l.frame = ((used + 8 + 15) & ~uint64_t{15}) - 8;
  return l;
}

class Writer {
 public:
  void byte(uint8_t b) { bytes_.push_back(b); }
  void u32(uint32_t v) {
    for (int k = 0; k < 4; ++k) byte(static_cast<uint8_t>(v >> (8 * k)));
  }
  // ModRM mod=10 (disp32) with rm=100 (SIB follows), SIB base=rsp, no index.
  void rsp_disp32(int reg_field, uint64_t disp) {
    byte(static_cast<uint8_t>(0x84 | (reg_field & 7) << 3));
    byte(0x24);
    u32(static_cast<uint32_t>(disp));
  }

  // lea disp(%rsp),%rsp: 48 8d a4 24 disp32
  void lea_rsp(int64_t disp) {
    byte(0x48);
    byte(0x8d);
    rsp_disp32(4, static_cast<uint64_t>(disp));
  }
  // mov %r64,disp(%rsp): REX.W(+R) 89 /r
  void store_gpr(int gpr, uint64_t disp) {
    byte(gpr >= 8 ? 0x4c : 0x48);
    byte(0x89);
    rsp_disp32(gpr, disp);
  }
  // mov disp(%rsp),%r64: REX.W(+R) 8b /r
  void load_gpr(int gpr, uint64_t disp) {
    byte(gpr >= 8 ? 0x4c : 0x48);
    byte(0x8b);
    rsp_disp32(gpr, disp);
  }
  // movdqu %xmmN,disp(%rsp): f3 (REX.R) 0f 7f /r; movdqu disp(%rsp),%xmmN: f3 (REX.R) 0f 6f /r
  void movdqu(int xmm, uint64_t disp, bool store) {
    byte(0xf3);
    if (xmm >= 8) byte(0x44);
    byte(0x0f);
    byte(store ? 0x7f : 0x6f);
    rsp_disp32(xmm, disp);
  }
  // pushq disp(%rsp): ff /6
  void push_mem(uint64_t disp) {
    byte(0xff);
    rsp_disp32(6, disp);
  }
  // popq disp(%rsp): 8f /0, address computed after rsp is incremented
  void pop_mem(uint64_t disp) {
    byte(0x8f);
    rsp_disp32(0, disp);
  }
  // call rel32: e8
  void call(int32_t rel) {
    byte(0xe8);
    u32(static_cast<uint32_t>(rel));
  }
  void ret() { byte(0xc3); }

  size_t size() const { return bytes_.size(); }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  std::vector<uint8_t> bytes_;
};

// DWARF register numbers (x86-64 psABI, figure 3.36) of the GPRs by hardware number.
constexpr uint8_t kDwarfGpr[16] = {0 /*rax*/, 2 /*rcx*/, 1 /*rdx*/, 3 /*rbx*/, 7 /*rsp*/, 6 /*rbp*/, 4 /*rsi*/,
                                   5 /*rdi*/, 8,          9,          10,         11,         12,         13,
                                   14,         15};
constexpr uint8_t kDwarfReturnAddress = 16;

// DW_CFA_* opcodes (DWARF 5, section 6.4.2), by their spec names.
constexpr uint8_t DW_CFA_advance_loc = 0x40, DW_CFA_offset = 0x80, DW_CFA_restore = 0xc0, DW_CFA_nop = 0x00,
                  DW_CFA_advance_loc1 = 0x02, DW_CFA_advance_loc2 = 0x03, DW_CFA_def_cfa = 0x0c,
                  DW_CFA_def_cfa_offset = 0x0e;
constexpr uint8_t DW_EH_PE_pcrel_sdata4 = 0x1b;
constexpr int64_t kDataAlign = -8;

void uleb128(std::vector<uint8_t>& out, uint64_t v) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    out.push_back(v ? (b | 0x80) : b);
  } while (v);
}

void put32(std::vector<uint8_t>& out, size_t at, uint32_t v) {
  for (int k = 0; k < 4; ++k) out[at + k] = static_cast<uint8_t>(v >> (8 * k));
}

// The call frame program of one thunk, written as its code is: each note says
// what is true from the end of the instruction just written.
class CfiProgram {
 public:
  void cfa_offset(uint64_t pc, uint64_t offset) {
    advance(pc);
    bytes_.push_back(DW_CFA_def_cfa_offset);
    uleb128(bytes_, offset);
  }
  // GPR `gpr` is saved at CFA - cfa_distance.
  void saved(uint64_t pc, int gpr, uint64_t cfa_distance) {
    advance(pc);
    bytes_.push_back(static_cast<uint8_t>(DW_CFA_offset | kDwarfGpr[gpr]));
    uleb128(bytes_, cfa_distance / static_cast<uint64_t>(-kDataAlign));
  }
  void restored(uint64_t pc, int gpr) {
    advance(pc);
    bytes_.push_back(static_cast<uint8_t>(DW_CFA_restore | kDwarfGpr[gpr]));
  }
  std::vector<uint8_t> take() { return std::move(bytes_); }

 private:
  void advance(uint64_t pc) {
    uint64_t delta = pc - pc_;
    pc_ = pc;
    if (delta == 0) return;
    if (delta < 64) {
      bytes_.push_back(static_cast<uint8_t>(DW_CFA_advance_loc | delta));
    } else if (delta < 256) {
      bytes_.push_back(DW_CFA_advance_loc1);
      bytes_.push_back(static_cast<uint8_t>(delta));
    } else {
      bytes_.push_back(DW_CFA_advance_loc2);
      bytes_.push_back(static_cast<uint8_t>(delta));
      bytes_.push_back(static_cast<uint8_t>(delta >> 8));
    }
  }

  std::vector<uint8_t> bytes_;
  uint64_t pc_ = 0;
};

// `rel32_for(call_end)` gives the call's displacement given the offset just past
// it; `cfi`, if given, receives the thunk's call frame program.
template <typename Rel32For>
std::vector<uint8_t> build(RegisterSet preserve, uint64_t stack_argument_bytes, Rel32For rel32_for,
                           CfiProgram* cfi = nullptr) {
  Layout l = layout(preserve, stack_argument_bytes);
  CfiProgram ignored;
  CfiProgram& c = cfi ? *cfi : ignored;
  Writer w;
  // CFA = E + 8 = C + F + 8 from here until the last lea.
  const uint64_t cfa = l.frame + 8;
  w.lea_rsp(-static_cast<int64_t>(l.frame));
  c.cfa_offset(w.size(), cfa);

  uint64_t at = l.xmm_at;
  for (int n = 0; n < 16; ++n) {
    if (preserve & xmm_bit(n)) { w.movdqu(n, at, true); at += kXmmSave; }
  }
  for (int n = 0; n < 16; ++n) {
    if (preserve & gpr_bit(n)) {
      w.store_gpr(n, at);
      c.saved(w.size(), n, cfa - at);
      at += kGprSave;
    }
  }

  // The caller's argument word k is at E + 8 + 8k = C + F + 8 + 8k; its copy at C + 8k.
  for (uint64_t k = 0; k < l.argument_bytes; k += 8) {
    w.push_mem(l.frame + 8 + k);
    c.cfa_offset(w.size(), cfa + 8);
    w.pop_mem(k);
    c.cfa_offset(w.size(), cfa);
  }

  w.call(rel32_for(w.size() + 5));

  at = l.xmm_at;
  for (int n = 0; n < 16; ++n) {
    if (preserve & xmm_bit(n)) { w.movdqu(n, at, false); at += kXmmSave; }
  }
  for (int n = 0; n < 16; ++n) {
    if (preserve & gpr_bit(n)) {
      w.load_gpr(n, at);
      c.restored(w.size(), n);
      at += kGprSave;
    }
  }
  w.lea_rsp(static_cast<int64_t>(l.frame));
  c.cfa_offset(w.size(), 8);
  w.ret();
  return w.take();
}

// Pads a CIE or FDE whose length word is at `start` to a multiple of 8 bytes
// with DW_CFA_nop and fills in the length.
void finish_record(std::vector<uint8_t>& out, size_t start) {
  while ((out.size() - start) % 8 != 0) out.push_back(DW_CFA_nop);
  put32(out, start, static_cast<uint32_t>(out.size() - start - 4));
}

// The table with the FDEs' pc_begin fields computed by `pc_begin(field offset,
// thunk)`.
template <typename PcBegin>
std::vector<uint8_t> build_table(std::span<const ThunkFrame> thunks, PcBegin pc_begin) {
  std::vector<uint8_t> out;
  // CIE: version 1, augmentation "zR" (FDE addresses are pcrel sdata4), code
  // alignment 1, data alignment -8, return address column 16; at entry CFA =
  // rsp + 8 and the return address is at CFA - 8.
  const size_t cie = out.size();
  out.insert(out.end(), {0, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, static_cast<uint8_t>(kDataAlign & 0x7f),
                         kDwarfReturnAddress, 1, DW_EH_PE_pcrel_sdata4, DW_CFA_def_cfa, kDwarfGpr[reg::kRsp], 8,
                         static_cast<uint8_t>(DW_CFA_offset | kDwarfReturnAddress), 1});
  finish_record(out, cie);
  for (const ThunkFrame& thunk : thunks) {
    CfiProgram program;
    const size_t size = build(thunk.preserve, thunk.stack_argument_bytes, [](size_t) { return 0; }, &program).size();
    const size_t fde = out.size();
    out.resize(out.size() + 16);
    put32(out, fde + 4, static_cast<uint32_t>(fde + 4 - cie));  // CIE pointer: back to the CIE
    put32(out, fde + 8, static_cast<uint32_t>(pc_begin(fde + 8, thunk)));
    put32(out, fde + 12, static_cast<uint32_t>(size));           // pc_range
    out.push_back(0);                                              // augmentation data length
    auto instructions = program.take();
    out.insert(out.end(), instructions.begin(), instructions.end());
    finish_record(out, fde);
  }
  out.insert(out.end(), {0, 0, 0, 0});  // terminator
  return out;
}

}  // namespace

std::vector<uint8_t> encode_preserving_thunk(RemoteAddr at, RemoteAddr new_function, RegisterSet preserve,
                                             uint64_t stack_argument_bytes) {
  return build(preserve, stack_argument_bytes, [&](size_t call_end) {
    RemoteAddr next = at + static_cast<int64_t>(call_end);
    int64_t distance = new_function - next;
    if (distance < std::numeric_limits<int32_t>::min() || distance > std::numeric_limits<int32_t>::max()) {
      fail("a preserving thunk at {} cannot reach the new function at {} with a rel32 call", at, new_function);
    }
    return static_cast<int32_t>(distance);
  });
}

size_t preserving_thunk_size(RegisterSet preserve, uint64_t stack_argument_bytes) {
  return build(preserve, stack_argument_bytes, [](size_t) { return 0; }).size();
}

uint64_t preserving_thunk_frame_size(RegisterSet preserve, uint64_t stack_argument_bytes) {
  return layout(preserve, stack_argument_bytes).frame;
}

std::vector<uint8_t> encode_thunk_unwind_table(RemoteAddr at, std::span<const ThunkFrame> thunks) {
  return build_table(thunks, [&](size_t field, const ThunkFrame& thunk) {
    int64_t distance = thunk.at - (at + static_cast<int64_t>(field));
    if (distance < std::numeric_limits<int32_t>::min() || distance > std::numeric_limits<int32_t>::max())
      fail("the unwind table at {} cannot describe the thunk at {}: out of 32-bit reach", at, thunk.at);
    return static_cast<int32_t>(distance);
  });
}

size_t thunk_unwind_table_size(std::span<const ThunkFrame> thunks) {
  return build_table(thunks, [](size_t, const ThunkFrame&) { return 0; }).size();
}

}  // namespace suture::redirect
