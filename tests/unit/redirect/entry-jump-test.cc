// Byte-array tests for planning entry jumps: code in, plan or refusal out. Every
// line of machine code carries its disassembly (objdump, AT&T syntax); the offset
// in the comment is from the function's entry.
#include "redirect/entry-jump.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"

namespace suture::redirect {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr RemoteAddr kFunction{0x401000};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// A gcc -O2 prologue and epilogue under -fcf-protection.
const Bytes kPrologue = {
    0xf3, 0x0f, 0x1e, 0xfa,  // +0x00 endbr64
    0x41, 0x57,              // +0x04 push %r15
    0x41, 0x56,              // +0x06 push %r14
    0x41, 0x55,              // +0x08 push %r13
    0x41, 0x54,              // +0x0a push %r12
    0x55,                    // +0x0c push %rbp
    0x53,                    // +0x0d push %rbx
    0x48, 0x83, 0xec, 0x18,  // +0x0e sub $0x18,%rsp
    0x48, 0x83, 0xc4, 0x18,  // +0x12 add $0x18,%rsp
    0x5b,                    // +0x16 pop %rbx
    0x5d,                    // +0x17 pop %rbp
    0x41, 0x5c,              // +0x18 pop %r12
    0x41, 0x5d,              // +0x1a pop %r13
    0x41, 0x5e,              // +0x1c pop %r14
    0x41, 0x5f,              // +0x1e pop %r15
    0xc3,                    // +0x20 ret
};

TEST(EntryJump, GccPrologueJumpsAfterEndbr64Forward) {
  RemoteAddr destination{0x500000};
  EntryJump plan = plan_entry_jump("f", kFunction, kPrologue, destination);
  EXPECT_EQ(plan.function, kFunction);
  EXPECT_EQ(plan.site, kFunction + 4);
  EXPECT_EQ(plan.destination, destination);
  // push %r15, push %r14 and the first byte of push %r13.
  EXPECT_EQ(plan.original, (Bytes{0x41, 0x57, 0x41, 0x56, 0x41}));
  // 0x500000 - (0x401004 + 5) = 0xfeff7
  EXPECT_EQ(plan.jump, (Bytes{0xe9, 0xf7, 0xef, 0x0f, 0x00}));  // jmp 0x500000
  EXPECT_EQ(plan.overwritten(), (RemoteRange{kFunction + 4, 5}));
}

TEST(EntryJump, GccPrologueJumpsAfterEndbr64Backward) {
  RemoteAddr function{0x7f1234560000};
  RemoteAddr destination{0x7f1234000000};
  EntryJump plan = plan_entry_jump("f", function, kPrologue, destination);
  EXPECT_EQ(plan.site, function + 4);
  // 0x7f1234000000 - (0x7f1234560004 + 5) = -0x560009
  EXPECT_EQ(plan.jump, (Bytes{0xe9, 0xf7, 0xff, 0xa9, 0xff}));  // jmp 0x7f1234000000
}

TEST(EntryJump, NoEndbr64JumpsAtEntry) {
  const Bytes code = {
      0x55,                    // +0x0 push %rbp
      0x48, 0x89, 0xe5,        // +0x1 mov %rsp,%rbp
      0x48, 0x83, 0xec, 0x10,  // +0x4 sub $0x10,%rsp
      0xc9,                    // +0x8 leave
      0xc3,                    // +0x9 ret
  };
  EntryJump plan = plan_entry_jump("f", kFunction, code, kFunction + 0x1000);
  EXPECT_EQ(plan.site, kFunction);
  EXPECT_EQ(plan.original, (Bytes{0x55, 0x48, 0x89, 0xe5, 0x48}));
  // 0x1000 - 5 = 0xffb
  EXPECT_EQ(plan.jump, (Bytes{0xe9, 0xfb, 0x0f, 0x00, 0x00}));
}

TEST(EntryJump, TooShortFunctionIsRefused) {
  const Bytes code = {
      0x31, 0xc0,  // +0x0 xor %eax,%eax
      0xc3,        // +0x2 ret
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("zero", kFunction, code, kFunction + 0x1000); }),
            "zero: too short to redirect (3 bytes; a jump needs 5)");
}

TEST(EntryJump, TooShortAfterEndbr64IsRefused) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x31, 0xc0,              // +0x4 xor %eax,%eax
      0xc3,                    // +0x6 ret
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("zero", kFunction, code, kFunction + 0x1000); }),
            "zero: too short to redirect (7 bytes; a jump needs 5 after the endbr64)");
}

TEST(EntryJump, LoopBackIntoOverwrittenBytesIsRefused) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x31, 0xc0,              // +0x4 xor %eax,%eax
      0x01, 0xf8,              // +0x6 add %edi,%eax     <- loop head, site + 2
      0xff, 0xcf,              // +0x8 dec %edi
      0x75, 0xfa,              // +0xa jne 0x6
      0xc3,                    // +0xc ret
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("sum", kFunction, code, kFunction + 0x1000); }),
            "sum: a branch at +0xa lands inside the bytes the jump would overwrite (at +0x6)");
}

TEST(EntryJump, CallIntoOverwrittenBytesIsRefused) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,        // +0x0 endbr64
      0x41, 0x57,                    // +0x4 push %r15
      0x41, 0x56,                    // +0x6 push %r14   <- called, site + 2
      0x41, 0x55,                    // +0x8 push %r13
      0xe8, 0xf7, 0xff, 0xff, 0xff,  // +0xa call 0x6
      0xc3,                          // +0xf ret
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("g", kFunction, code, kFunction + 0x1000); }),
            "g: a branch at +0xa lands inside the bytes the jump would overwrite (at +0x6)");
}

TEST(EntryJump, LoopBackToSiteIsAccepted) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x01, 0xf8,              // +0x4 add %edi,%eax     <- loop head, the site
      0xff, 0xcf,              // +0x6 dec %edi
      0x75, 0xfa,              // +0x8 jne 0x4
      0xc3,                    // +0xa ret
  };
  EntryJump plan = plan_entry_jump("sum", kFunction, code, kFunction + 0x1000);
  EXPECT_EQ(plan.site, kFunction + 4);
  EXPECT_EQ(plan.original, (Bytes{0x01, 0xf8, 0xff, 0xcf, 0x75}));
}

TEST(EntryJump, LoopBackToJustAfterOverwrittenBytesIsAccepted) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x31, 0xc0,              // +0x4 xor %eax,%eax
      0x48, 0x89, 0xf9,        // +0x6 mov %rdi,%rcx
      0x01, 0xc8,              // +0x9 add %ecx,%eax     <- loop head, site + 5
      0xff, 0xc9,              // +0xb dec %ecx
      0x75, 0xfa,              // +0xd jne 0x9
      0xc3,                    // +0xf ret
  };
  EntryJump plan = plan_entry_jump("sum", kFunction, code, kFunction + 0x1000);
  EXPECT_EQ(plan.original, (Bytes{0x31, 0xc0, 0x48, 0x89, 0xf9}));
}

TEST(EntryJump, DestinationOutOfReachIsRefused) {
  EXPECT_EQ(error_of([&] { plan_entry_jump("f", kFunction, kPrologue, RemoteAddr{0x7f0000000000}); }),
            "f: new code at 0x7f0000000000 is out of reach of a 32-bit jump from 0x401004");
  // Just past 2 GiB below the jump's end.
  RemoteAddr function{0x100000000};
  EXPECT_EQ(error_of([&] { plan_entry_jump("f", function, kPrologue, function + 9 - 0x80000001); }),
            "f: new code at 0x80000008 is out of reach of a 32-bit jump from 0x100000004");
  EXPECT_EQ(plan_entry_jump("f", function, kPrologue, function + 9 - 0x80000000).jump,
            (Bytes{0xe9, 0x00, 0x00, 0x00, 0x80}));  // jmp .-0x7ffffffb
}

TEST(EntryJump, StackedPatchReplacesOurEarlierJump) {
  // The function once was
  //   endbr64; push %r12; push %rbp; push %rbx; nopl 0x0(%rax,%rax,1); ret
  // and an earlier patch wrote a jump over its first five bytes after the endbr64,
  // cutting the nopl: its tail no longer decodes.
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,        // +0x0 endbr64
      0xe9, 0xf7, 0xef, 0xff, 0xff,  // +0x4 jmp -0x1000 (the earlier patch's new code)
      0x1f,                          // +0x9 (bad)
      0x44, 0x00, 0x00,              // +0xa add %r8b,(%rax)
      0xc3,                          // +0xd ret
  };
  ASSERT_TRUE(scan_branches(kFunction, code).undecodable_at.has_value());
  EntryJump plan = plan_entry_jump("f", kFunction, code, kFunction + 0x2000);
  EXPECT_EQ(plan.site, kFunction + 4);
  // Reverting the newer patch puts the earlier jump back.
  EXPECT_EQ(plan.original, (Bytes{0xe9, 0xf7, 0xef, 0xff, 0xff}));
  // 0x2000 - 9 = 0x1ff7
  EXPECT_EQ(plan.jump, (Bytes{0xe9, 0xf7, 0x1f, 0x00, 0x00}));
}

TEST(EntryJump, LongInstructionRunsPastOverwrittenBytes) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,                                      // +0x0 endbr64
      0x31, 0xc0,                                                  // +0x4 xor %eax,%eax
      0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  // +0x6 movabs $0x1122334455667788,%rax
      0xc3,                                                        // +0x10 ret
  };
  EntryJump plan = plan_entry_jump("f", kFunction, code, kFunction + 0x1000);
  EXPECT_EQ(plan.original, (Bytes{0x31, 0xc0, 0x48, 0xb8, 0x88}));
  EXPECT_EQ(plan.overwritten(), (RemoteRange{kFunction + 4, 5}));
}

TEST(EntryJump, RipRelativeInOverwrittenBytesIsAccepted) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,                    // +0x0 endbr64
      0x48, 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00,  // +0x4 mov 0x1000(%rip),%rax
      0xc3,                                      // +0xb ret
  };
  EntryJump plan = plan_entry_jump("f", kFunction, code, kFunction + 0x1000);
  EXPECT_EQ(plan.original, (Bytes{0x48, 0x8b, 0x05, 0x00, 0x10}));
}

TEST(EntryJump, JunkInOverwrittenBytesIsRefused) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x06,                    // +0x4 (bad)
      0x06,                    // +0x5 (bad)
      0x06,                    // +0x6 (bad)
      0x06,                    // +0x7 (bad)
      0x06,                    // +0x8 (bad)
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("data", kFunction, code, kFunction + 0x1000); }),
            "data: could not decode at +0x4; the bytes the jump would overwrite must be whole instructions");
}

TEST(EntryJump, InstructionCutByFunctionEndIsRefused) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x41, 0x57,              // +0x4 push %r15
      0x41, 0x56,              // +0x6 push %r14
      0xe8, 0x00, 0x00,        // +0x8 call (cut off by st_size)
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("f", kFunction, code, kFunction + 0x1000); }),
            "f: could not decode at +0x8; the bytes the jump would overwrite must be whole instructions");
}

TEST(EntryJump, JunkLaterInFunctionIsRefused) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,  // +0x0 endbr64
      0x41, 0x57,              // +0x4 push %r15
      0x41, 0x56,              // +0x6 push %r14
      0x41, 0x55,              // +0x8 push %r13
      0x06,                    // +0xa (bad)
      0xc3,                    // +0xb ret
  };
  EXPECT_EQ(error_of([&] { plan_entry_jump("f", kFunction, code, kFunction + 0x1000); }),
            "f: could not decode at +0xa; cannot check that no branch lands inside the bytes the jump would "
            "overwrite");
}

TEST(BranchScan, FindsEveryKindOfRelativeBranch) {
  const Bytes code = {
      0xf3, 0x0f, 0x1e, 0xfa,              // +0x00 endbr64
      0x0f, 0x85, 0x10, 0x00, 0x00, 0x00,  // +0x04 jne 0x1a
      0x75, 0xfe,                          // +0x0a jne 0xa
      0xeb, 0x0c,                          // +0x0c jmp 0x1a
      0xe9, 0xed, 0xff, 0xff, 0xff,        // +0x0e jmp 0x0
      0xe8, 0x00, 0x01, 0x00, 0x00,        // +0x13 call 0x118
      0xe2, 0xfe,                          // +0x18 loop 0x18
      0xe3, 0x00,                          // +0x1a jrcxz 0x1c
      0xff, 0xd0,                          // +0x1c call *%rax (indirect: not seen)
      0xc3,                                // +0x1e ret
  };
  BranchScan scan = scan_branches(kFunction, code);
  EXPECT_FALSE(scan.undecodable_at.has_value());
  std::vector<std::pair<int64_t, int64_t>> found;
  for (const Branch& b : scan.branches) found.emplace_back(b.from - kFunction, b.to - kFunction);
  EXPECT_EQ(found, (std::vector<std::pair<int64_t, int64_t>>{
                       {0x04, 0x1a}, {0x0a, 0x0a}, {0x0c, 0x1a}, {0x0e, 0x00},
                       {0x13, 0x118}, {0x18, 0x18}, {0x1a, 0x1c}}));
  EXPECT_EQ(branch_targets(kFunction, code),
            (std::vector<RemoteAddr>{kFunction + 0x1a, kFunction + 0x0a, kFunction + 0x1a, kFunction,
                                     kFunction + 0x118, kFunction + 0x18, kFunction + 0x1c}));
}

TEST(BranchScan, StopsAtUndecodableBytes) {
  const Bytes code = {
      0x75, 0x02,  // +0x0 jne 0x4
      0x06,        // +0x2 (bad)
      0x75, 0xfe,  // +0x3 jne 0x3 (not reached)
  };
  BranchScan scan = scan_branches(kFunction, code);
  ASSERT_EQ(scan.branches.size(), 1u);
  EXPECT_EQ(scan.branches[0].to, kFunction + 4);
  EXPECT_EQ(scan.undecodable_at, 2u);
}

TEST(EncodeJmpRel32, Arithmetic) {
  RemoteAddr from{0x100000000};
  EXPECT_EQ(encode_jmp_rel32(from, from + 5), (std::array<uint8_t, 5>{0xe9, 0x00, 0x00, 0x00, 0x00}));  // jmp .+5
  EXPECT_EQ(encode_jmp_rel32(from, from), (std::array<uint8_t, 5>{0xe9, 0xfb, 0xff, 0xff, 0xff}));  // jmp .
  EXPECT_EQ(encode_jmp_rel32(from, from + 5 + 0x7fffffff),
            (std::array<uint8_t, 5>{0xe9, 0xff, 0xff, 0xff, 0x7f}));  // jmp .+0x80000004
  EXPECT_EQ(encode_jmp_rel32(from, from + 5 - 0x80000000),
            (std::array<uint8_t, 5>{0xe9, 0x00, 0x00, 0x00, 0x80}));  // jmp .-0x7ffffffb
  EXPECT_THROW(encode_jmp_rel32(from, from + 5 + 0x80000000), Error);
  EXPECT_THROW(encode_jmp_rel32(from, from + 5 - 0x80000001), Error);
}

TEST(Endbr64, Detection) {
  EXPECT_TRUE(starts_with_endbr64(Bytes{0xf3, 0x0f, 0x1e, 0xfa}));        // endbr64
  EXPECT_TRUE(starts_with_endbr64(Bytes{0xf3, 0x0f, 0x1e, 0xfa, 0xc3}));  // endbr64; ret
  EXPECT_FALSE(starts_with_endbr64(Bytes{0xf3, 0x0f, 0x1e, 0xfb}));       // endbr32
  EXPECT_FALSE(starts_with_endbr64(Bytes{0xf3, 0x0f, 0x1e}));             // (cut)
  EXPECT_FALSE(starts_with_endbr64(Bytes{}));
}

TEST(InstructionLength, Encodings) {
  EXPECT_EQ(instruction_length(Bytes{0xc3}), 1u);                    // ret
  EXPECT_EQ(instruction_length(Bytes{0x41, 0x57}), 2u);              // push %r15 (REX.B)
  EXPECT_EQ(instruction_length(Bytes{0x48, 0x89, 0xe5}), 3u);        // mov %rsp,%rbp (REX.W)
  EXPECT_EQ(instruction_length(Bytes{0xf3, 0x0f, 0x1e, 0xfa}), 4u);  // endbr64
  EXPECT_EQ(instruction_length(Bytes{0x48, 0x8b, 0x84, 0x24, 0x88, 0x00, 0x00, 0x00}),
            8u);  // mov 0x88(%rsp),%rax (ModRM + SIB + disp32)
  EXPECT_EQ(instruction_length(Bytes{0x4c, 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00}),
            7u);  // mov 0x1000(%rip),%r8
  EXPECT_EQ(instruction_length(Bytes{0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00}),
            9u);  // nopw 0x0(%rax,%rax,1)
  EXPECT_EQ(instruction_length(Bytes{0xc7, 0x84, 0x24, 0x88, 0x00, 0x00, 0x00, 0x78, 0x56, 0x34, 0x12}),
            11u);  // movl $0x12345678,0x88(%rsp) (SIB + disp32 + imm32)
  EXPECT_EQ(instruction_length(Bytes{0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}),
            10u);  // movabs $0x1122334455667788,%rax
  EXPECT_EQ(instruction_length(Bytes{0xc5, 0xf9, 0x6f, 0x07}), 4u);              // vmovdqa (%rdi),%xmm0 (VEX)
  EXPECT_EQ(instruction_length(Bytes{0x62, 0xf1, 0x7c, 0x48, 0x28, 0x07}), 6u);  // vmovaps (%rdi),%zmm0 (EVEX)
  EXPECT_EQ(instruction_length(Bytes{0x41, 0x57, 0xc3}), 2u);                    // push %r15; ret: only the first
}

TEST(InstructionLength, UndecodableIsZero) {
  EXPECT_EQ(instruction_length(Bytes{}), 0u);
  EXPECT_EQ(instruction_length(Bytes{0x06}), 0u);                    // (bad): push %es is gone in 64-bit mode
  EXPECT_EQ(instruction_length(Bytes{0x48, 0xb8, 0x11, 0x22}), 0u);  // movabs cut short
}

}  // namespace
}  // namespace suture::redirect
