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

// `rel32_for(call_end)` gives the call's displacement given the offset just past it.
template <typename Rel32For>
std::vector<uint8_t> build(RegisterSet preserve, uint64_t stack_argument_bytes, Rel32For rel32_for) {
  Layout l = layout(preserve, stack_argument_bytes);
  Writer w;
  w.lea_rsp(-static_cast<int64_t>(l.frame));

  uint64_t at = l.xmm_at;
  for (int n = 0; n < 16; ++n) {
    if (preserve & xmm_bit(n)) { w.movdqu(n, at, true); at += kXmmSave; }
  }
  for (int n = 0; n < 16; ++n) {
    if (preserve & gpr_bit(n)) { w.store_gpr(n, at); at += kGprSave; }
  }

  // The caller's argument word k is at E + 8 + 8k = C + F + 8 + 8k; its copy at C + 8k.
  for (uint64_t k = 0; k < l.argument_bytes; k += 8) {
    w.push_mem(l.frame + 8 + k);
    w.pop_mem(k);
  }

  w.call(rel32_for(w.size() + 5));

  at = l.xmm_at;
  for (int n = 0; n < 16; ++n) {
    if (preserve & xmm_bit(n)) { w.movdqu(n, at, false); at += kXmmSave; }
  }
  for (int n = 0; n < 16; ++n) {
    if (preserve & gpr_bit(n)) { w.load_gpr(n, at); at += kGprSave; }
  }
  w.lea_rsp(static_cast<int64_t>(l.frame));
  w.ret();
  return w.take();
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

}  // namespace suture::redirect
