// The register contract a function really keeps with its callers, as opposed to
// the one the psABI promises. gcc -O2 (-fipa-ra) lets callers keep values in
// caller-saved registers across a call when it can see that the callee never
// writes them; a replacement that writes more breaks those callers. This file
// finds, from machine code, which caller-saved registers a function may write
// and how much of its stack-passed arguments it reads, so the redirect can wrap
// a replacement in a preserving thunk (preserving-thunk.h) when it must.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "common/remote-addr.h"

namespace suture::redirect {

// Bits 0-15: general-purpose registers in hardware numbering (rax=0, rcx=1, rdx=2,
// rbx=3, rsp=4, rbp=5, rsi=6, rdi=7, r8..r15=8..15). Bits 16-31: xmm0..xmm15
// (the low 128 bits of ymm/zmm 0..15).
using RegisterSet = uint32_t;

namespace reg {
inline constexpr int kRax = 0, kRcx = 1, kRdx = 2, kRbx = 3, kRsp = 4, kRbp = 5, kRsi = 6, kRdi = 7;
inline constexpr int kR8 = 8, kR9 = 9, kR10 = 10, kR11 = 11, kR12 = 12, kR13 = 13, kR14 = 14, kR15 = 15;
}  // namespace reg

constexpr RegisterSet gpr_bit(int number) { return RegisterSet{1} << number; }
constexpr RegisterSet xmm_bit(int number) { return RegisterSet{1} << (16 + number); }

inline constexpr RegisterSet kAllGprs = 0xffff;
inline constexpr RegisterSet kAllXmms = 0xffff0000;
inline constexpr RegisterSet kAllRegisters = kAllGprs | kAllXmms;
// What the psABI lets a callee destroy: rax rcx rdx rsi rdi r8-r11 and every xmm.
inline constexpr RegisterSet kCallerSaved =
    gpr_bit(reg::kRax) | gpr_bit(reg::kRcx) | gpr_bit(reg::kRdx) | gpr_bit(reg::kRsi) | gpr_bit(reg::kRdi) |
    gpr_bit(reg::kR8) | gpr_bit(reg::kR9) | gpr_bit(reg::kR10) | gpr_bit(reg::kR11) | kAllXmms;

// "rsi, rcx, xmm1": argument order first (rax, rdi, rsi, rdx, rcx, r8, r9), then
// r10, r11, the callee-saved ones, rsp, xmm0..xmm15. "none" for the empty set.
std::string describe_registers(RegisterSet registers);

struct Clobbers {
  // Caller-saved registers the function (with everything it calls) may write.
  // Always a subset of kCallerSaved; kCallerSaved when anything was unknown.
  RegisterSet registers = 0;
  // False when part of the answer is the conservative "all caller-saved" rather
  // than read from code: an unknown or indirect call, an undecodable byte, a
  // syscall, a call cycle, the depth limit. why_incomplete names the first cause.
  bool complete = true;
  std::string why_incomplete;
  // Bytes of the caller's stack-argument area (entry rsp + 8 upwards) that the
  // function reads or writes: 0 when it uses none, -1 when it cannot be told
  // (rsp lost, the address of the area taken, an indirect jump, a tail call to an
  // unknown function).
  int64_t stack_argument_bytes = 0;
  // The function writes state outside RegisterSet that a caller could in theory
  // keep live across a call (AVX-512 k masks, zmm16-31, x87/MMX). Not preserved
  // by a thunk; reported so the caller can say so.
  bool writes_untracked_state = false;
};

// Given a direct branch target outside the function being analysed, the entry
// and bytes of the function there, or nullopt if unknown (a PLT slot, another
// object, an address that is not a function start).
using CalleeLookup =
    std::function<std::optional<std::pair<RemoteAddr, std::span<const uint8_t>>>(RemoteAddr target)>;

// Analyses the linked function at `function` (its st_size bytes `code`). Direct
// calls and tail jumps to other functions are analysed through `callee` (depth at
// most 8; a cycle or a missing callee counts as all caller-saved).
Clobbers analyze_clobbers(RemoteAddr function, std::span<const uint8_t> code, const CalleeLookup& callee = {});

// Analyses a function of a patch object before it is linked: the rel32 of its
// branches to other functions is a placeholder. `relocated_fields` lists the
// offsets (from the function's first byte) of the fields a relocation will fill;
// a call/jmp/jcc whose rel32 is one of them goes out to an unknown function. The
// overload without the list treats every `call rel32` and `jmp rel32` (e8, e9)
// as going out; conditional and short branches stay inside.
Clobbers analyze_unlinked_clobbers(std::span<const uint8_t> code, std::span<const uint64_t> relocated_fields);
Clobbers analyze_unlinked_clobbers(std::span<const uint8_t> code);

// The caller-saved registers the new function may write that the old one never
// does: callers may keep live values there. They cannot be return registers of
// the (common) signature, since the old function does not write them.
constexpr RegisterSet registers_to_preserve(const Clobbers& old_fn, const Clobbers& new_fn) {
  return (new_fn.registers & kCallerSaved) & ~old_fn.registers;
}

}  // namespace suture::redirect
