// Byte-array tests for the register contract: machine code in, the caller-saved
// registers it may write and its use of stack arguments out. Every line carries
// its disassembly (objdump, AT&T syntax); offsets are from the function's entry.
#include "redirect/register-contract.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <bit>
#include <optional>
#include <span>
#include <vector>

namespace suture::redirect {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr RemoteAddr kFunction{0x401000};

constexpr RegisterSet rax = gpr_bit(reg::kRax), rcx = gpr_bit(reg::kRcx), rdx = gpr_bit(reg::kRdx),
                      rdi = gpr_bit(reg::kRdi), rsi = gpr_bit(reg::kRsi), r11 = gpr_bit(reg::kR11);

TEST(RegisterContract, DescribesInArgumentOrder) {
  EXPECT_EQ(describe_registers(rsi | rcx | xmm_bit(1)), "rsi, rcx, xmm1");
  EXPECT_EQ(describe_registers(0), "none");
  EXPECT_EQ(describe_registers(gpr_bit(reg::kR10) | rax | xmm_bit(15)), "rax, r10, xmm15");
  EXPECT_EQ(std::popcount(kCallerSaved), 9 + 16);
}

TEST(RegisterContract, LeafLoopWritesOnlyRax) {
  const Bytes code = {
      0x31, 0xc0,              // +0x0 xor %eax,%eax
      0x80, 0x3c, 0x07, 0x00,  // +0x2 cmpb $0x0,(%rdi,%rax,1)
      0x74, 0x06,              // +0x6 je 0xe
      0x48, 0x83, 0xc0, 0x01,  // +0x8 add $0x1,%rax
      0xeb, 0xf4,              // +0xc jmp 0x2
      0xc3,                    // +0xe ret
  };
  Clobbers c = analyze_clobbers(kFunction, code);
  EXPECT_EQ(c.registers, rax) << describe_registers(c.registers);
  EXPECT_TRUE(c.complete);
  EXPECT_EQ(c.stack_argument_bytes, 0);
  EXPECT_FALSE(c.writes_untracked_state);
}

TEST(RegisterContract, CallOutsideWithoutLookupIsAllCallerSaved) {
  const Bytes code = {
      0x53,                          // +0x0 push %rbx
      0x48, 0x89, 0xfb,              // +0x1 mov %rdi,%rbx
      0xe8, 0xfb, 0x0f, 0x00, 0x00,  // +0x4 call 0x1004
      0x48, 0x01, 0xd8,              // +0x9 add %rbx,%rax
      0x5b,                          // +0xc pop %rbx
      0xc3,                          // +0xd ret
  };
  Clobbers c = analyze_clobbers(kFunction, code);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_FALSE(c.complete);
  EXPECT_EQ(c.why_incomplete, "call at +0x4 to 0x402004: unknown function at 0x402004");
  EXPECT_EQ(c.stack_argument_bytes, 0);
}

TEST(RegisterContract, RepStosWritesRcxAndRdi) {
  const Bytes code = {
      0x48, 0x89, 0xfa,              // +0x0 mov %rdi,%rdx
      0xb9, 0x08, 0x00, 0x00, 0x00,  // +0x3 mov $0x8,%ecx
      0x31, 0xc0,                    // +0x8 xor %eax,%eax
      0xf3, 0x48, 0xab,              // +0xa rep stos %rax,%es:(%rdi)
      0x48, 0x89, 0xd0,              // +0xd mov %rdx,%rax
      0xc3,                          // +0x10 ret
  };
  Clobbers c = analyze_clobbers(kFunction, code);
  EXPECT_EQ(c.registers, rax | rcx | rdx | rdi) << describe_registers(c.registers);
  EXPECT_TRUE(c.complete);
}

TEST(RegisterContract, HiddenOperandsOfMulAndCpuid) {
  const Bytes mul = {
      0x48, 0x89, 0xf8,  // +0x0 mov %rdi,%rax
      0x48, 0xf7, 0xe6,  // +0x3 mul %rsi
      0xc3,              // +0x6 ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, mul).registers, rax | rdx);
  const Bytes cpuid = {
      0x53,        // +0x0 push %rbx
      0x0f, 0xa2,  // +0x1 cpuid
      0x5b,        // +0x3 pop %rbx
      0xc3,        // +0x4 ret
  };
  // rbx is written too, but it is callee-saved.
  EXPECT_EQ(analyze_clobbers(kFunction, cpuid).registers, rax | rcx | rdx);
}

TEST(RegisterContract, SyscallIndirectJumpAndGarbageAreAllCallerSaved) {
  const Bytes syscall = {
      0xb8, 0x27, 0x00, 0x00, 0x00,  // +0x0 mov $0x27,%eax
      0x0f, 0x05,                    // +0x5 syscall
      0xc3,                          // +0x7 ret
  };
  Clobbers c = analyze_clobbers(kFunction, syscall);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_EQ(c.why_incomplete, "enters the kernel at +0x5");

  const Bytes indirect = {
      0xff, 0x25, 0x00, 0x01, 0x00, 0x00,  // +0x0 jmp *0x100(%rip)
  };
  c = analyze_clobbers(kFunction, indirect);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_EQ(c.why_incomplete, "jump at +0x0 to an unknown target");
  EXPECT_EQ(c.stack_argument_bytes, -1);

  const Bytes garbage = {
      0x31, 0xc0,  // +0x0 xor %eax,%eax
      0x06,        // +0x2 (bad)
  };
  c = analyze_clobbers(kFunction, garbage);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_EQ(c.why_incomplete, "could not decode at +0x2");
  EXPECT_EQ(c.stack_argument_bytes, -1);
}

TEST(RegisterContract, MovsdWritesXmm1) {
  const Bytes code = {
      0xf2, 0x0f, 0x10, 0x0f,  // +0x0 movsd (%rdi),%xmm1
      0xf2, 0x0f, 0x58, 0xc1,  // +0x4 addsd %xmm1,%xmm0
      0xc3,                    // +0x8 ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).registers, xmm_bit(0) | xmm_bit(1));
}

TEST(RegisterContract, VectorWidthsAndUntrackedState) {
  const Bytes code = {
      0xc5, 0xfc, 0x57, 0xdb,              // +0x0 vxorps %ymm3,%ymm0,%ymm3
      0x62, 0xe1, 0x7c, 0x48, 0x57, 0xc0,  // +0x4 vxorps %zmm0,%zmm0,%zmm16
      0xc3,                                // +0xa ret
  };
  Clobbers c = analyze_clobbers(kFunction, code);
  EXPECT_EQ(c.registers, xmm_bit(3));
  EXPECT_TRUE(c.writes_untracked_state);
}

// outer: calls itself and a leaf helper at +0x106.
const Bytes kOuter = {
    0x53,                          // +0x0 push %rbx
    0xe8, 0xfa, 0xff, 0xff, 0xff,  // +0x1 call 0x0 (itself)
    0xe8, 0xfb, 0x00, 0x00, 0x00,  // +0x6 call 0x106 (inner)
    0x5b,                          // +0xb pop %rbx
    0xc3,                          // +0xc ret
};
const Bytes kInner = {
    0xba, 0x03, 0x00, 0x00, 0x00,  // +0x0 mov $0x3,%edx
    0xf2, 0x0f, 0x10, 0xd0,        // +0x5 movsd %xmm0,%xmm2
    0xc3,                          // +0x9 ret
};

TEST(RegisterContract, CallsResolvedThroughTheLookup) {
  std::vector<RemoteAddr> asked;
  CalleeLookup lookup = [&](RemoteAddr target) -> std::optional<std::pair<RemoteAddr, std::span<const uint8_t>>> {
    asked.push_back(target);
    if (target == kFunction + 0x106) return std::pair{target, std::span<const uint8_t>(kInner)};
    return std::nullopt;
  };
  Clobbers c = analyze_clobbers(kFunction, kOuter, lookup);
  EXPECT_EQ(c.registers, rdx | xmm_bit(2)) << describe_registers(c.registers);
  EXPECT_TRUE(c.complete) << c.why_incomplete;
  EXPECT_EQ(asked, std::vector<RemoteAddr>{kFunction + 0x106});  // the self-call needs no lookup
}

TEST(RegisterContract, MutualRecursionIsConservative) {
  // a at 0x401000 calls b at 0x402000, which calls a.
  const Bytes a = {
      0xe8, 0xfb, 0x0f, 0x00, 0x00,  // +0x0 call 0x402000
      0xc3,                          // +0x5 ret
  };
  const Bytes b = {
      0xe8, 0xfb, 0xef, 0xff, 0xff,  // +0x0 call 0x401000
      0xc3,                          // +0x5 ret
  };
  CalleeLookup lookup = [&](RemoteAddr target) -> std::optional<std::pair<RemoteAddr, std::span<const uint8_t>>> {
    if (target == kFunction) return std::pair{target, std::span<const uint8_t>(a)};
    if (target == RemoteAddr{0x402000}) return std::pair{target, std::span<const uint8_t>(b)};
    return std::nullopt;
  };
  Clobbers c = analyze_clobbers(kFunction, a, lookup);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_FALSE(c.complete);
}

// mov $0x1,%ecx; jmp to a function that reads its first stack argument.
const Bytes kTailCaller = {
    0xb9, 0x01, 0x00, 0x00, 0x00,  // +0x0 mov $0x1,%ecx
    0xe9, 0xfb, 0x02, 0x00, 0x00,  // +0x5 jmp 0x305
};
const Bytes kReadsFirstStackArgument = {
    0x48, 0x8b, 0x44, 0x24, 0x08,  // +0x0 mov 0x8(%rsp),%rax
    0xc3,                          // +0x5 ret
};

TEST(RegisterContract, TailCallCountsTheCalleesClobbersAndStackArguments) {
  CalleeLookup lookup = [&](RemoteAddr target) -> std::optional<std::pair<RemoteAddr, std::span<const uint8_t>>> {
    if (target == kFunction + 0x305) return std::pair{target, std::span<const uint8_t>(kReadsFirstStackArgument)};
    return std::nullopt;
  };
  Clobbers c = analyze_clobbers(kFunction, kTailCaller, lookup);
  EXPECT_EQ(c.registers, rax | rcx);
  EXPECT_EQ(c.stack_argument_bytes, 8);

  c = analyze_clobbers(kFunction, kTailCaller);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_EQ(c.stack_argument_bytes, -1);
}

TEST(RegisterContract, StackArgumentAtEntry) {
  EXPECT_EQ(analyze_clobbers(kFunction, kReadsFirstStackArgument).stack_argument_bytes, 8);
}

TEST(RegisterContract, StackArgumentAfterPush) {
  const Bytes code = {
      0x53,                          // +0x0 push %rbx
      0x48, 0x8b, 0x44, 0x24, 0x10,  // +0x1 mov 0x10(%rsp),%rax   (entry rsp + 8)
      0x5b,                          // +0x6 pop %rbx
      0xc3,                          // +0x7 ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).stack_argument_bytes, 8);
}

TEST(RegisterContract, StackArgumentAfterSub) {
  const Bytes code = {
      0x48, 0x83, 0xec, 0x28,        // +0x0 sub $0x28,%rsp
      0x48, 0x8b, 0x44, 0x24, 0x38,  // +0x4 mov 0x38(%rsp),%rax   (entry rsp + 0x10: the second argument)
      0x48, 0x83, 0xc4, 0x28,        // +0x9 add $0x28,%rsp
      0xc3,                          // +0xd ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).stack_argument_bytes, 16);
}

TEST(RegisterContract, StackArgumentsThroughFramePointer) {
  const Bytes code = {
      0x55,                    // +0x0 push %rbp
      0x48, 0x89, 0xe5,        // +0x1 mov %rsp,%rbp
      0x8b, 0x45, 0x18,        // +0x4 mov 0x18(%rbp),%eax   (entry rsp + 0x10, 4 bytes)
      0x48, 0x03, 0x45, 0x10,  // +0x7 add 0x10(%rbp),%rax   (entry rsp + 0x8)
      0x5d,                    // +0xb pop %rbp
      0xc3,                    // +0xc ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).stack_argument_bytes, 12);
}

TEST(RegisterContract, StackOffsetsFollowBranchesNotLayout) {
  // The block at +0x10 is reached with rbx still pushed, although it follows a ret.
  const Bytes code = {
      0x53,                          // +0x0 push %rbx
      0x48, 0x85, 0xff,              // +0x1 test %rdi,%rdi
      0x74, 0x0a,                    // +0x4 je 0x10
      0x48, 0x89, 0xfb,              // +0x6 mov %rdi,%rbx
      0xe8, 0xfb, 0x01, 0x00, 0x00,  // +0x9 call 0x209
      0x5b,                          // +0xe pop %rbx
      0xc3,                          // +0xf ret
      0x48, 0x8b, 0x44, 0x24, 0x10,  // +0x10 mov 0x10(%rsp),%rax   (entry rsp + 8)
      0x5b,                          // +0x15 pop %rbx
      0xc3,                          // +0x16 ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).stack_argument_bytes, 8);
}

TEST(RegisterContract, RealignedStackIsUnknown) {
  const Bytes code = {
      0x55,                          // +0x0 push %rbp
      0x48, 0x89, 0xe5,              // +0x1 mov %rsp,%rbp
      0x48, 0x83, 0xe4, 0xe0,        // +0x4 and $0xffffffffffffffe0,%rsp
      0x48, 0x8b, 0x44, 0x24, 0x08,  // +0x8 mov 0x8(%rsp),%rax
      0xc9,                          // +0xd leave
      0xc3,                          // +0xe ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).stack_argument_bytes, -1);
}

TEST(RegisterContract, AddressOfStackArgumentsIsUnknown) {
  const Bytes code = {
      0x48, 0x83, 0xec, 0x58,        // +0x0 sub $0x58,%rsp
      0x48, 0x8d, 0x44, 0x24, 0x60,  // +0x4 lea 0x60(%rsp),%rax   (entry rsp + 8, as va_start)
      0x48, 0x89, 0x44, 0x24, 0x08,  // +0x9 mov %rax,0x8(%rsp)
      0x48, 0x83, 0xc4, 0x58,        // +0xe add $0x58,%rsp
      0xc3,                          // +0x12 ret
  };
  EXPECT_EQ(analyze_clobbers(kFunction, code).stack_argument_bytes, -1);
}

// A patch object's function before linking: the call's rel32 is a placeholder
// (R_X86_64_PLT32 at +0x5, addend -4), the long jcc is resolved within the function.
const Bytes kUnlinked = {
    0x48, 0x85, 0xff,                    // +0x0 test %rdi,%rdi
    0x75, 0x06,                          // +0x3 jne 0xb
    0x31, 0xc0,                          // +0x5 xor %eax,%eax
    0xc3,                                // +0x7 ret
    0x90, 0x90, 0x90,                    // +0x8 nop (x3)
    0x0f, 0x84, 0x06, 0x00, 0x00, 0x00,  // +0xb je 0x17
    0xe9, 0x00, 0x00, 0x00, 0x00,        // +0x11 jmp 0x16   (R_X86_64_PLT32 at +0x12)
    0xc3,                                // +0x16 ret
    0x31, 0xc9,                          // +0x17 xor %ecx,%ecx
    0xc3,                                // +0x19 ret
};

TEST(RegisterContract, UnlinkedBranchesGoOut) {
  Clobbers c = analyze_unlinked_clobbers(kUnlinked);
  EXPECT_EQ(c.registers, kCallerSaved);
  EXPECT_EQ(c.why_incomplete, "jump at +0x11 to an unknown target");
  EXPECT_EQ(c.stack_argument_bytes, -1);

  // Only listed fields are placeholders: without the jmp's field, the code stays inside.
  const std::vector<uint64_t> none_relocated;
  c = analyze_unlinked_clobbers(kUnlinked, none_relocated);
  EXPECT_EQ(c.registers, rax | rcx);
  EXPECT_TRUE(c.complete);
  EXPECT_EQ(c.stack_argument_bytes, 0);

  const std::vector<uint64_t> relocated = {0x12};
  EXPECT_EQ(analyze_unlinked_clobbers(kUnlinked, relocated).registers, kCallerSaved);
}

TEST(RegisterContract, RegistersToPreserve) {
  Clobbers old_fn{.registers = rax};
  Clobbers new_fn{.registers = rax | rsi | rcx | xmm_bit(1)};
  EXPECT_EQ(registers_to_preserve(old_fn, new_fn), rsi | rcx | xmm_bit(1));
  Clobbers unknown_old{.registers = kCallerSaved, .complete = false};
  EXPECT_EQ(registers_to_preserve(unknown_old, new_fn), 0u);
  EXPECT_EQ(registers_to_preserve(new_fn, old_fn), 0u);
  Clobbers r11_new{.registers = r11};
  EXPECT_EQ(registers_to_preserve(old_fn, r11_new), r11);
}

}  // namespace
}  // namespace suture::redirect
