// A preserving thunk: what the old entry jumps to when the replacement may write
// caller-saved registers that the old function provably left alone (see
// register-contract.h). It saves those registers, calls the new function with the
// caller's stack arguments copied where the psABI puts them, restores the
// registers and returns to the original caller.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/remote-addr.h"
#include "redirect/register-contract.h"

namespace suture::redirect {

// The most stack-argument bytes a thunk copies (an unrolled copy costs 14 bytes of
// code per 8 bytes of arguments).
inline constexpr uint64_t kMaxThunkStackArgumentBytes = 1024;

// The thunk's bytes for address `at`, calling `new_function`.
//  - preserve: the registers to keep across the call, normally
//    registers_to_preserve(old, new). The old function never writes them, so none
//    carries a return value of the shared signature; rax, rdx, xmm0 and xmm1 pass
//    through from the new function untouched unless the caller put them here.
//    Only the low 128 bits of an xmm register are kept (movdqu): baseline x86-64
//    code keeps no values in the upper halves of ymm/zmm, and k masks, zmm16-31,
//    x87 and MMX state are not kept at all. Flags are not kept. rsp may not be in
//    the set.
//  - stack_argument_bytes: how many bytes of the caller's stack arguments (from
//    entry rsp + 8 upwards) the new function uses; rounded up to 8 and copied.
//    Copying more than used is harmless (it reads the caller's frame).
// The thunk writes no register outside `preserve` other than rflags, keeps rsp
// 16-byte aligned at the call, and keeps all its data at or above rsp, so the new
// function's red zone and signal frames never touch it. Its unwind information
// comes from encode_thunk_unwind_table().
// Throws Error if `new_function` is out of rel32 reach of the call inside the
// thunk, if rsp is in `preserve`, or if stack_argument_bytes exceeds
// kMaxThunkStackArgumentBytes.
std::vector<uint8_t> encode_preserving_thunk(RemoteAddr at, RemoteAddr new_function, RegisterSet preserve,
                                             uint64_t stack_argument_bytes);

// The exact size of encode_preserving_thunk()'s result (it does not depend on
// the addresses): 22 + 16 per GPR + 18 per xmm0-7 + 20 per xmm8-15 + 14 per 8
// bytes of stack arguments. Throws like encode_preserving_thunk().
size_t preserving_thunk_size(RegisterSet preserve, uint64_t stack_argument_bytes);

// The frame the thunk allocates below its entry rsp, and so how far the new
// function's entry rsp lies below the caller's: saves and the argument copy,
// rounded so that rsp is 16-byte aligned at the call.
uint64_t preserving_thunk_frame_size(RegisterSet preserve, uint64_t stack_argument_bytes);

// One thunk as its unwind table describes it.
struct ThunkFrame {
  RemoteAddr at;  // where encode_preserving_thunk() put it
  RegisterSet preserve = 0;
  uint64_t stack_argument_bytes = 0;
};

// An .eh_frame for the thunks, to be placed at `at`: one CIE, one FDE per thunk
// describing every instruction (the frame, each saved GPR), and the zero
// terminator, ready for the unwinder's registry. Throws Error if a thunk is out
// of 32-bit reach of the table.
std::vector<uint8_t> encode_thunk_unwind_table(RemoteAddr at, std::span<const ThunkFrame> thunks);

// The exact size of encode_thunk_unwind_table()'s result (independent of addresses).
size_t thunk_unwind_table_size(std::span<const ThunkFrame> thunks);

}  // namespace suture::redirect
