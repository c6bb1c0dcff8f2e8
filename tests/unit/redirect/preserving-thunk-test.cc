// Tests for the preserving thunk: the encoding decoded back with Zydis, the frame
// arithmetic, and the thunk run for real in this process between a caller that
// keeps values in caller-saved registers and a callee that destroys them.
#include "redirect/preserving-thunk.h"

#include <Zydis/Zydis.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/error.h"

// The callee and the caller, in assembly so that we know exactly which registers
// each touches.
//
// thunk_test_callee(uint64_t* record, a2, a3, a4, a5, a6, a7, a8): a7 and a8 come
// on the stack. Records its entry rsp mod 16, a7 and a8 in record[0..2], returns
// a2 + ... + a8 in rax and 0xd0d0 in rdx, and destroys every other caller-saved
// register it may.
//
// thunk_test_caller(const void* thunk, uint64_t* record): calls `thunk` as
// thunk_test_callee(record, 2, 4, 8, 16, 32, 64, 128) with sentinels in r10, r11
// and xmm5, then stores r10, r11, xmm5 (16 bytes) and rdx after the call in
// record[3..7]. Returns what the call returned.
asm(R"(
  .pushsection .text
  .intel_syntax noprefix

  .globl thunk_test_callee
  .type thunk_test_callee, @function
thunk_test_callee:
  mov rax, rsp
  and eax, 15
  mov [rdi], rax
  mov rax, [rsp+8]
  mov [rdi+8], rax
  mov rax, [rsp+16]
  mov [rdi+16], rax
  lea rax, [rsi+rdx]
  add rax, rcx
  add rax, r8
  add rax, r9
  add rax, [rsp+8]
  add rax, [rsp+16]
  mov edx, 0xd0d0
  xor ecx, ecx
  xor esi, esi
  xor edi, edi
  xor r8d, r8d
  xor r9d, r9d
  xor r10d, r10d
  xor r11d, r11d
  pxor xmm5, xmm5
  ret
  .size thunk_test_callee, .-thunk_test_callee

  .globl thunk_test_caller
  .type thunk_test_caller, @function
thunk_test_caller:
  push rbx
  push r12
  push r13
  mov r12, rdi
  mov rbx, rsi
  push 128
  push 64
  mov rdi, rbx
  mov esi, 2
  mov edx, 4
  mov ecx, 8
  mov r8d, 16
  mov r9d, 32
  movabs r10, 0x1111222233334444
  movq xmm5, r10
  movabs r11, 0x5555666677778888
  movq xmm6, r11
  punpcklqdq xmm5, xmm6
  movabs r10, 0xa10a10a10a10a10a
  movabs r11, 0xb11b11b11b11b11b
  call r12
  add rsp, 16
  mov [rbx+24], r10
  mov [rbx+32], r11
  movdqu [rbx+40], xmm5
  mov [rbx+56], rdx
  pop r13
  pop r12
  pop rbx
  ret
  .size thunk_test_caller, .-thunk_test_caller

  .att_syntax prefix
  .popsection
)");

extern "C" uint64_t thunk_test_callee(uint64_t*, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t,
                                      uint64_t);
extern "C" uint64_t thunk_test_caller(const void* thunk, uint64_t* record);

// libgcc's frame registry (libgcc_s), as the engine calls it in a target.
extern "C" void __register_frame_info_table(const void* tables, void* object);
extern "C" void* __deregister_frame_info(const void* tables);

// A callee that throws for odd x; its own frame has ordinary unwind tables.
extern "C" __attribute__((noinline)) uint64_t thunk_test_throwing_callee(uint64_t x) {
  if (x % 2) throw std::runtime_error("odd " + std::to_string(x));
  return x * 2;
}

namespace suture::redirect {
namespace {

constexpr RegisterSet rcx = gpr_bit(reg::kRcx), rsi = gpr_bit(reg::kRsi), r10 = gpr_bit(reg::kR10),
                      r11 = gpr_bit(reg::kR11);

std::vector<std::string> mnemonics(const std::vector<uint8_t>& code, RemoteAddr at,
                                   std::vector<std::string>* operands_text = nullptr) {
  ZydisDecoder decoder;
  ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  ZydisFormatter formatter;
  ZydisFormatterInit(&formatter, ZYDIS_FORMATTER_STYLE_INTEL);
  std::vector<std::string> out;
  size_t offset = 0;
  while (offset < code.size()) {
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, code.data() + offset, code.size() - offset, &insn, ops))) {
      out.push_back("(bad)");
      break;
    }
    char text[128];
    ZydisFormatterFormatInstruction(&formatter, &insn, ops, insn.operand_count_visible, text, sizeof text,
                                    at.value() + offset, nullptr);
    out.push_back(ZydisMnemonicGetString(insn.mnemonic));
    if (operands_text) operands_text->push_back(text);
    offset += insn.length;
  }
  return out;
}

TEST(PreservingThunk, EncodesSavesCallRestores) {
  RemoteAddr at{0x7f0000001000};
  RemoteAddr target{0x7f0000400000};
  RegisterSet preserve = rsi | rcx | xmm_bit(1);
  std::vector<uint8_t> code = encode_preserving_thunk(at, target, preserve, 0);
  // Saves: xmm1 at 0, rcx at 16, rsi at 24: 32 bytes; the frame is 40 so that
  // entry rsp (8 mod 16) - 40 is 0 mod 16 at the call.
  EXPECT_EQ(preserving_thunk_frame_size(preserve, 0), 40u);
  const std::vector<uint8_t> expected_head = {
      0x48, 0x8d, 0xa4, 0x24, 0xd8, 0xff, 0xff, 0xff,        // lea -0x28(%rsp),%rsp
      0xf3, 0x0f, 0x7f, 0x8c, 0x24, 0x00, 0x00, 0x00, 0x00,  // movdqu %xmm1,0x0(%rsp)
      0x48, 0x89, 0x8c, 0x24, 0x10, 0x00, 0x00, 0x00,        // mov %rcx,0x10(%rsp)
      0x48, 0x89, 0xb4, 0x24, 0x18, 0x00, 0x00, 0x00,        // mov %rsi,0x18(%rsp)
  };
  ASSERT_GE(code.size(), expected_head.size());
  EXPECT_EQ(std::vector<uint8_t>(code.begin(), code.begin() + expected_head.size()), expected_head);

  std::vector<std::string> text;
  EXPECT_EQ(mnemonics(code, at, &text),
            (std::vector<std::string>{"lea", "movdqu", "mov", "mov", "call", "movdqu", "mov", "mov", "lea", "ret"}));
  EXPECT_EQ(text[4], "call 0x00007F0000400000");
  EXPECT_EQ(text[5], "movdqu xmm1, [rsp]");
  EXPECT_EQ(text[6], "mov rcx, [rsp+0x10]");
  EXPECT_EQ(text[7], "mov rsi, [rsp+0x18]");
  EXPECT_EQ(text[8], "lea rsp, [rsp+0x28]");
  EXPECT_EQ(code.size(), preserving_thunk_size(preserve, 0));
  EXPECT_EQ(code.size(), 22u + 2 * 16 + 18);
}

TEST(PreservingThunk, CopiesStackArgumentsAboveTheNewReturnAddress) {
  RemoteAddr at{0x401000};
  RegisterSet preserve = r10 | xmm_bit(9);
  // 12 bytes round up to two words. Saves: xmm9 at 16, r10 at 32: 40 bytes, frame 40.
  std::vector<uint8_t> code = encode_preserving_thunk(at, RemoteAddr{0x402000}, preserve, 12);
  EXPECT_EQ(preserving_thunk_frame_size(preserve, 12), 40u);
  std::vector<std::string> text;
  EXPECT_EQ(mnemonics(code, at, &text), (std::vector<std::string>{"lea", "movdqu", "mov", "push", "pop", "push", "pop",
                                                                  "call", "movdqu", "mov", "lea", "ret"}));
  // Entry rsp + 8 + 8k is rsp + 40 + 8 + 8k after the lea.
  EXPECT_EQ(text[3], "push [rsp+0x30]");
  EXPECT_EQ(text[4], "pop [rsp]");
  EXPECT_EQ(text[5], "push [rsp+0x38]");
  EXPECT_EQ(text[6], "pop [rsp+0x08]");
  EXPECT_EQ(code.size(), preserving_thunk_size(preserve, 12));
  EXPECT_EQ(code.size(), 22u + 16 + 20 + 2 * 14);
}

TEST(PreservingThunk, FrameKeepsTheCallAligned) {
  for (RegisterSet preserve : {RegisterSet{0}, r10, r10 | r11, xmm_bit(0), r10 | xmm_bit(3) | xmm_bit(12)}) {
    for (uint64_t args : {0, 1, 8, 16, 24, 40}) {
      uint64_t frame = preserving_thunk_frame_size(preserve, args);
      uint64_t needed = (args + 7) / 8 * 8 + 16 * std::popcount(preserve & kAllXmms) +
                        8 * std::popcount(preserve & kAllGprs);
      EXPECT_EQ(frame % 16, 8u);  // entry rsp is 8 mod 16
      EXPECT_GE(frame, needed);
      EXPECT_LT(frame, needed + 24);
    }
  }
}

TEST(PreservingThunk, Refusals) {
  EXPECT_THROW(encode_preserving_thunk(RemoteAddr{0x401000}, RemoteAddr{0x7f0000000000}, r10, 0), Error);
  EXPECT_THROW(encode_preserving_thunk(RemoteAddr{0x401000}, RemoteAddr{0x402000}, gpr_bit(reg::kRsp), 0), Error);
  EXPECT_THROW(preserving_thunk_size(0, kMaxThunkStackArgumentBytes + 1), Error);
}

// Executable memory within rel32 reach of `near`.
class NearCode {
 public:
  NearCode(uint64_t near, size_t size) : size_((size + 0xfff) & ~size_t{0xfff}) {
    for (uint64_t distance = 1 << 20; distance < (uint64_t{1} << 30); distance += 1 << 20) {
      for (uint64_t hint : {near - distance, near + distance}) {
        void* p = mmap(reinterpret_cast<void*>(hint & ~uint64_t{0xfff}), size_, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p != MAP_FAILED) {
          base_ = p;
          return;
        }
      }
    }
  }
  ~NearCode() {
    if (base_) munmap(base_, size_);
  }
  NearCode(const NearCode&) = delete;
  NearCode& operator=(const NearCode&) = delete;

  void* base() const { return base_; }
  bool install(const std::vector<uint8_t>& code) {
    std::memcpy(base_, code.data(), code.size());
    return mprotect(base_, size_, PROT_READ | PROT_EXEC) == 0;
  }

 private:
  size_t size_;
  void* base_ = nullptr;
};

TEST(PreservingThunk, RunsBetweenACallerAndACalleeThatClobbers) {
  auto callee = reinterpret_cast<uint64_t>(&thunk_test_callee);
  std::array<uint64_t, 8> record{};

  // Called directly, the callee destroys the sentinels: the test can see the bug.
  EXPECT_EQ(thunk_test_caller(reinterpret_cast<const void*>(callee), record.data()), 254u);
  EXPECT_EQ(record[3], 0u);
  EXPECT_EQ(record[4], 0u);

  RegisterSet preserve = r10 | r11 | xmm_bit(5);
  NearCode memory(callee, preserving_thunk_size(preserve, 16));
  if (!memory.base()) GTEST_SKIP() << "no free memory within rel32 reach of the test binary";
  RemoteAddr at{reinterpret_cast<uint64_t>(memory.base())};
  ASSERT_TRUE(memory.install(encode_preserving_thunk(at, RemoteAddr{callee}, preserve, 16)));

  record = {};
  uint64_t returned = thunk_test_caller(memory.base(), record.data());
  EXPECT_EQ(returned, 2u + 4 + 8 + 16 + 32 + 64 + 128);  // argument registers and both stack arguments arrived
  EXPECT_EQ(record[0], 8u);                               // the callee was entered with rsp = 8 mod 16
  EXPECT_EQ(record[1], 64u);                              // a7
  EXPECT_EQ(record[2], 128u);                             // a8
  EXPECT_EQ(record[3], 0xa10a10a10a10a10au);              // r10 kept
  EXPECT_EQ(record[4], 0xb11b11b11b11b11bu);              // r11 kept
  EXPECT_EQ(record[5], 0x1111222233334444u);              // xmm5 kept, low half
  EXPECT_EQ(record[6], 0x5555666677778888u);              // xmm5 kept, high half
  EXPECT_EQ(record[7], 0xd0d0u);                          // rdx came back from the callee
}

TEST(PreservingThunk, UnwindTableDescribesEveryInstruction) {
  const RemoteAddr table_at{0x7f0000002000};
  const RemoteAddr thunk_at{0x7f0000001000};
  const RegisterSet preserve = rsi | rcx | xmm_bit(1);  // the thunk of EncodesSavesCallRestores
  const ThunkFrame frames[] = {{thunk_at, preserve, 0}};
  const std::vector<uint8_t> table = encode_thunk_unwind_table(table_at, frames);
  const std::vector<uint8_t> cie = {
      0x14, 0x00, 0x00, 0x00,  // length 20
      0x00, 0x00, 0x00, 0x00,  // CIE id
      0x01, 'z', 'R', 0x00,    // version 1, augmentation "zR"
      0x01, 0x78, 0x10,        // code alignment 1, data alignment -8, return address column 16
      0x01, 0x1b,              // augmentation data: FDE pointers are pcrel sdata4
      0x0c, 0x07, 0x08,        // DW_CFA_def_cfa rsp+8
      0x90, 0x01,              // DW_CFA_offset r16 (return address) at cfa-8
      0x00, 0x00,              // DW_CFA_nop padding
  };
  const std::vector<uint8_t> fde = {
      0x24, 0x00, 0x00, 0x00,  // length 36
      0x1c, 0x00, 0x00, 0x00,  // CIE pointer: 28 bytes back
      0xe0, 0xef, 0xff, 0xff,  // pc_begin: thunk_at - (table_at + 32)
      0x48, 0x00, 0x00, 0x00,  // pc_range: the thunk's 72 bytes
      0x00,                    // no augmentation data
      0x48, 0x0e, 0x30,        // after lea -0x28(%rsp),%rsp (8): cfa = rsp+48
      0x51, 0x82, 0x04,        // after movdqu, mov %rcx (25): rcx at cfa-32
      0x48, 0x84, 0x03,        // after mov %rsi (33): rsi at cfa-24
      0x56, 0xc2,              // after call, movdqu, mov ..,%rcx (55): rcx restored
      0x48, 0xc4,              // after mov ..,%rsi (63): rsi restored
      0x48, 0x0e, 0x08,        // after lea 0x28(%rsp),%rsp (71): cfa = rsp+8
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // DW_CFA_nop padding to 40 bytes
  };
  std::vector<uint8_t> expected = cie;
  expected.insert(expected.end(), fde.begin(), fde.end());
  expected.insert(expected.end(), {0, 0, 0, 0});  // terminator
  EXPECT_EQ(table, expected);
  EXPECT_EQ(table.size(), thunk_unwind_table_size(frames));
  EXPECT_EQ(preserving_thunk_size(preserve, 0), 72u);
}

TEST(PreservingThunk, UnwindTableFollowsArgumentPushesAndFarThunks) {
  // r10 and two argument words (the thunk of CopiesStackArgumentsAboveTheNewReturnAddress):
  // each push moves the CFA offset to 56 and each pop back to 48.
  const ThunkFrame frames[] = {{RemoteAddr{0x401000}, r10 | xmm_bit(9), 12}, {RemoteAddr{0x402000}, r11, 0}};
  const std::vector<uint8_t> table = encode_thunk_unwind_table(RemoteAddr{0x403000}, frames);
  const std::vector<uint8_t> first_program = {
      0x48, 0x0e, 0x30,  // after lea (8): cfa = rsp+48
      0x52, 0x8a, 0x02,  // after movdqu %xmm9 (10), mov %r10 (8) (26): r10 at cfa-16
      0x47, 0x0e, 0x38,  // after push (33): cfa = rsp+56
      0x47, 0x0e, 0x30,  // after pop (40): rsp+48
      0x47, 0x0e, 0x38,  // push (47)
      0x47, 0x0e, 0x30,  // pop (54)
      0x57, 0xca,        // after call, movdqu, mov ..,%r10 (77): r10 restored
      0x48, 0x0e, 0x08,  // after lea (85): cfa = rsp+8
  };
  ASSERT_GT(table.size(), 24u + 17 + first_program.size());
  EXPECT_EQ(std::vector<uint8_t>(table.begin() + 24 + 17, table.begin() + 24 + 17 + first_program.size()),
            first_program);
  EXPECT_EQ(table.size(), thunk_unwind_table_size(frames));
  EXPECT_THROW(encode_thunk_unwind_table(RemoteAddr{0x7f0000000000}, frames), Error);
}

// The thunk and its unwind table, installed in this process.
struct InstalledThunk {
  RegisterSet preserve = r10 | r11 | rsi | xmm_bit(5);
  NearCode memory{reinterpret_cast<uint64_t>(&thunk_test_throwing_callee), 4096};
  std::array<const void*, 2> tables{};
  alignas(16) std::array<uint8_t, 128> object{};  // libgcc's struct object

  bool install() {
    if (!memory.base()) return false;
    const RemoteAddr at{reinterpret_cast<uint64_t>(memory.base())};
    std::vector<uint8_t> code =
        encode_preserving_thunk(at, RemoteAddr{reinterpret_cast<uint64_t>(&thunk_test_throwing_callee)}, preserve, 0);
    code.resize((code.size() + 7) & ~size_t{7}, 0xcc);
    const RemoteAddr table_at = at + static_cast<int64_t>(code.size());
    const ThunkFrame frames[] = {{at, preserve, 0}};
    const std::vector<uint8_t> table = encode_thunk_unwind_table(table_at, frames);
    tables[0] = reinterpret_cast<const void*>(table_at.value());
    code.insert(code.end(), table.begin(), table.end());
    return memory.install(code);
  }
  uint64_t call(uint64_t x) const { return reinterpret_cast<uint64_t (*)(uint64_t)>(memory.base())(x); }
};

TEST(PreservingThunk, AThrowCrossesTheThunkOnlyWithItsUnwindTable) {
  InstalledThunk thunk;
  if (!thunk.install()) GTEST_SKIP() << "no free memory within rel32 reach of the test binary";
  EXPECT_EQ(thunk.call(4), 8u);
  // Unknown to the unwinder, the thunk's frame ends the search: std::terminate.
  EXPECT_DEATH(
      {
        try {
          thunk.call(3);
        } catch (const std::exception&) {
        }
      },
      "");

  __register_frame_info_table(thunk.tables.data(), thunk.object.data());
  std::string caught;
  try {
    thunk.call(5);
  } catch (const std::runtime_error& e) {
    caught = e.what();
  }
  EXPECT_EQ(caught, "odd 5");
  EXPECT_EQ(thunk.call(6), 12u);
  EXPECT_EQ(__deregister_frame_info(thunk.tables.data()), thunk.object.data());
}

}  // namespace
}  // namespace suture::redirect
