// Byte-array tests for the relocation arithmetic: a section's bytes in, the
// patched bytes (or an error) out. Every line of machine code carries its
// disassembly (objdump, AT&T syntax) and the offset within the section.
#include "link/x86-64-relocations.h"

#include <elf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/error.h"

namespace suture::link {
namespace {

using Bytes = std::vector<uint8_t>;
using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

RelocationSite site(uint32_t type, uint64_t offset, std::string_view symbol = "x",
                    std::string_view section = ".text") {
  return {.object = "fix.o", .section = section, .offset = offset, .type = type, .symbol = symbol};
}

TEST(Relocations, Pc32Forward) {
  Bytes text = {
      0x8b, 0x05, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov x(%rip),%eax
      0xc3,                                // +0x6 ret
  };
  // .text at 0x401000, x at 0x402000: S + A - P = 0x402000 - 4 - 0x401002 = 0xffa
  apply_relocation(text, site(R_X86_64_PC32, 2), {.S = 0x402000, .A = -4, .P = 0x401002});
  EXPECT_EQ(text, (Bytes{
                      0x8b, 0x05, 0xfa, 0x0f, 0x00, 0x00,  // +0x0 mov 0x402000(%rip),%eax
                      0xc3,                                // +0x6 ret
                  }));
}

TEST(Relocations, Pc32Backward) {
  Bytes text = {
      0xe8, 0x00, 0x00, 0x00, 0x00,  // +0x0 call x
  };
  // .text at 0x401000, x at 0x400800: 0x400800 - 4 - 0x401001 = -0x805
  apply_relocation(text, site(R_X86_64_PC32, 1), {.S = 0x400800, .A = -4, .P = 0x401001});
  EXPECT_EQ(text, (Bytes{
                      0xe8, 0xfb, 0xf7, 0xff, 0xff,  // +0x0 call 0x400800
                  }));
}

TEST(Relocations, Pc32OutOfRangeSuggestsFpic) {
  Bytes text = {
      0x8b, 0x05, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov x(%rip),%eax
  };
  const Bytes before = text;
  // x in a library 0x2aaaa2200000 bytes away (> 2 GiB).
  std::string e = error_of([&] {
    apply_relocation(text, site(R_X86_64_PC32, 2), {.S = 0x7ffff7a00000, .A = -4, .P = 0x555555555002});
  });
  EXPECT_THAT(e, HasSubstr("fix.o: .text+0x2: R_X86_64_PC32 against 'x': target out of range"));
  EXPECT_THAT(e, HasSubstr("-fPIC"));
  EXPECT_EQ(text, before);  // nothing written
}

TEST(Relocations, Abs32sFitsWhenLowOrNegative) {
  Bytes text = {
      0x48, 0xc7, 0xc7, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov $x,%rdi
  };
  // x at 0x404040 (a non-PIE executable): S + A = 0x404040
  apply_relocation(text, site(R_X86_64_32S, 3), {.S = 0x404040, .A = 0});
  EXPECT_EQ(text, (Bytes{0x48, 0xc7, 0xc7, 0x40, 0x40, 0x40, 0x00}));  // mov $0x404040,%rdi
  // -0x80000000 is the lowest value the sign-extended imm32 can hold (kernel model).
  apply_relocation(text, site(R_X86_64_32S, 3), {.S = 0xffffffff80000000, .A = 0});
  EXPECT_EQ(text, (Bytes{0x48, 0xc7, 0xc7, 0x00, 0x00, 0x00, 0x80}));  // mov $-0x80000000,%rdi
}

TEST(Relocations, Abs32sOverflowNamesSymbolAndSuggestsFpic) {
  Bytes text = {
      0x48, 0xc7, 0xc7, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov $x,%rdi
  };
  const Bytes before = text;
  // x in a PIE executable at 0x555555558010: does not fit a sign-extended imm32.
  std::string e = error_of([&] { apply_relocation(text, site(R_X86_64_32S, 3), {.S = 0x555555558010, .A = 0}); });
  EXPECT_EQ(e,
            "fix.o: .text+0x3: R_X86_64_32S against 'x' (0x555555558010) does not fit; compile the patch with "
            "-fPIC");
  EXPECT_EQ(text, before);
}

TEST(Relocations, Abs32IsZeroExtended) {
  Bytes text = {
      0xbf, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov $x,%edi
  };
  // 0xfffff000 fits the zero-extended imm32 of `mov $imm32,%edi`.
  apply_relocation(text, site(R_X86_64_32, 1), {.S = 0xfffff000, .A = 0});
  EXPECT_EQ(text, (Bytes{0xbf, 0x00, 0xf0, 0xff, 0xff}));  // mov $0xfffff000,%edi
  // A negative value does not: the upper half would be lost.
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_32, 1), {.S = 0, .A = -8}); }),
              HasSubstr("R_X86_64_32 against 'x' (0xfffffffffffffff8) does not fit"));
}

TEST(Relocations, Abs64) {
  Bytes data(16, 0);  // .data: .quad 0; .quad x+8
  // S + A = 0x7f1234567890 + 8
  apply_relocation(data, site(R_X86_64_64, 8, "x", ".data"), {.S = 0x7f1234567890, .A = 8});
  EXPECT_EQ(data, (Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0x98, 0x78, 0x56, 0x34, 0x12, 0x7f, 0, 0}));
}

TEST(Relocations, GotpcrelToSlot) {
  Bytes text = {
      0x48, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov x@GOTPCREL(%rip),%rax
      0x8b, 0x00,                                // +0x7 mov (%rax),%eax
  };
  // GOT at 0x403000, x's slot at GOT + 0x10: 0x403010 - 4 - 0x401003 = 0x2009
  apply_relocation(text, site(R_X86_64_REX_GOTPCRELX, 3),
                   {.S = 0x7ffff7dd0000, .A = -4, .P = 0x401003, .GOT = 0x403000, .G = 0x10});
  EXPECT_EQ(text, (Bytes{
                      0x48, 0x8b, 0x05, 0x09, 0x20, 0x00, 0x00,  // +0x0 mov 0x403010(%rip),%rax
                      0x8b, 0x00,                                // +0x7 mov (%rax),%eax
                  }));
}

TEST(Relocations, Plt32NearGoesStraightToTheFunction) {
  Bytes text = {
      0xe8, 0x00, 0x00, 0x00, 0x00,  // +0x0 call f@PLT
  };
  // f at 0x401100, .text at 0x401000: L = S, 0x401100 - 4 - 0x401001 = 0xfb
  apply_relocation(text, site(R_X86_64_PLT32, 1, "f"), {.S = 0x401100, .A = -4, .P = 0x401001, .L = 0x401100});
  EXPECT_EQ(text, (Bytes{0xe8, 0xfb, 0x00, 0x00, 0x00}));  // call 0x401100
}

TEST(Relocations, Plt32FarGoesThroughStub) {
  Bytes text = {
      0xe8, 0x00, 0x00, 0x00, 0x00,  // +0x0 call memcpy@PLT
  };
  const uint64_t S = 0x7ffff7e40000;   // memcpy in libc, > 2 GiB from the patch
  const uint64_t text_at = 0x555555600000;
  const uint64_t stub = 0x555555600800;  // in our text, after the sections
  const uint64_t slot = 0x555555601008;  // in our rodata, holds S
  // Aimed at S itself it is out of range.
  EXPECT_THAT(error_of([&] {
                apply_relocation(text, site(R_X86_64_PLT32, 1, "memcpy"),
                                 {.S = S, .A = -4, .P = text_at + 1, .L = S});
              }),
              HasSubstr("R_X86_64_PLT32 against 'memcpy': target out of range"));
  // Through the stub: 0x555555600800 - 4 - 0x555555600001 = 0x7fb
  apply_relocation(text, site(R_X86_64_PLT32, 1, "memcpy"), {.S = S, .A = -4, .P = text_at + 1, .L = stub});
  EXPECT_EQ(text, (Bytes{0xe8, 0xfb, 0x07, 0x00, 0x00}));  // call 0x555555600800
  // The stub: 0x555555601008 - (0x555555600800 + 6) = 0x802
  auto bytes = encode_far_stub(stub, slot);
  EXPECT_EQ(Bytes(bytes.begin(), bytes.end()), (Bytes{
                                                    0xff, 0x25, 0x02, 0x08, 0x00, 0x00,  // jmp *0x555555601008(%rip)
                                                    0xcc, 0xcc,                          // int3; int3
                                                }));
  EXPECT_THAT(error_of([&] { encode_far_stub(stub, S); }), HasSubstr("out of rel32 range"));
}

TEST(Relocations, TlsdescRelaxedToInitialExec) {
  Bytes text = {
      0x48, 0x8d, 0x05, 0x00, 0x00, 0x00, 0x00,  // +0x0 lea x@tlsdesc(%rip),%rax
      0xff, 0x10,                                // +0x7 call *x@tlscall(%rax)
      0x64, 0x8b, 0x00,                          // +0x9 mov %fs:(%rax),%eax
  };
  // .text at 0x401000; x's TP-offset slot at GOT + 0x18 = 0x403018:
  // 0x403018 - 4 - 0x401003 = 0x2011
  const RelocationValues values = {.S = 0x10, .A = -4, .P = 0x401003, .GOT = 0x403000, .G = 0x18, .TP = -0x40};
  apply_relocation(text, site(R_X86_64_GOTPC32_TLSDESC, 3), values);
  apply_relocation(text, site(R_X86_64_TLSDESC_CALL, 7), values);
  EXPECT_EQ(text, (Bytes{
                      0x48, 0x8b, 0x05, 0x11, 0x20, 0x00, 0x00,  // +0x0 mov 0x403018(%rip),%rax
                      0x66, 0x90,                                // +0x7 xchg %ax,%ax
                      0x64, 0x8b, 0x00,                          // +0x9 mov %fs:(%rax),%eax
                  }));
}

TEST(Relocations, TlsdescNeedsStaticTls) {
  Bytes text = {
      0x48, 0x8d, 0x05, 0x00, 0x00, 0x00, 0x00,  // +0x0 lea x@tlsdesc(%rip),%rax
      0xff, 0x10,                                // +0x7 call *x@tlscall(%rax)
  };
  const Bytes before = text;
  const RelocationValues dynamic = {.S = 0x10, .A = -4, .P = 0x401003, .GOT = 0x403000, .G = 0x18};
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_GOTPC32_TLSDESC, 3), dynamic); }),
              HasSubstr("not in static TLS; compile the patch with -mtls-dialect=gnu"));
  EXPECT_EQ(text, before);
}

TEST(Relocations, TlsdescRefusesUnexpectedInstruction) {
  Bytes text = {
      0x48, 0x8d, 0x3d, 0x00, 0x00, 0x00, 0x00,  // +0x0 lea x@tlsdesc(%rip),%rdi (not the ABI's %rax)
  };
  EXPECT_THAT(error_of([&] {
                apply_relocation(text, site(R_X86_64_GOTPC32_TLSDESC, 3),
                                 {.A = -4, .P = 0x401003, .GOT = 0x403000, .TP = -0x40});
              }),
              HasSubstr("expected lea x@tlsdesc(%rip),%rax (48 8d 05), found 48 8d 3d"));
}

TEST(Relocations, TlsGeneralDynamicPointsAtPair) {
  Bytes text = {
      0x66, 0x48, 0x8d, 0x3d, 0x00, 0x00, 0x00, 0x00,  // +0x0 data16 lea x@tlsgd(%rip),%rdi
      0x66, 0x66, 0x48, 0xe8, 0x00, 0x00, 0x00, 0x00,  // +0x8 data16 data16 rex.W call __tls_get_addr@PLT
  };
  // pair at GOT + 0x20 = 0x403020: 0x403020 - 4 - 0x401004 = 0x2018
  apply_relocation(text, site(R_X86_64_TLSGD, 4), {.S = 0x10, .A = -4, .P = 0x401004, .GOT = 0x403000, .G = 0x20});
  EXPECT_EQ(Bytes(text.begin(), text.begin() + 8),
            (Bytes{0x66, 0x48, 0x8d, 0x3d, 0x18, 0x20, 0x00, 0x00}));  // data16 lea 0x403020(%rip),%rdi
}

TEST(Relocations, LocalExecAndDtpoff) {
  Bytes text = {
      0x64, 0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x00,  // +0x0 mov %fs:x@tpoff,%eax
      0x48, 0x8d, 0x80, 0x00, 0x00, 0x00, 0x00,        // +0x8 lea x@dtpoff(%rax),%rax
  };
  // x at offset 0x10 of a block at %fs:-0x40: S + TP + A = -0x30
  apply_relocation(text, site(R_X86_64_TPOFF32, 4), {.S = 0x10, .A = 0, .TP = -0x40});
  // DTPOFF32: S + A = 0x14
  apply_relocation(text, site(R_X86_64_DTPOFF32, 11), {.S = 0x10, .A = 4});
  EXPECT_EQ(text, (Bytes{
                      0x64, 0x8b, 0x04, 0x25, 0xd0, 0xff, 0xff, 0xff,  // +0x0 mov %fs:0xffffffffffffffd0,%eax
                      0x48, 0x8d, 0x80, 0x14, 0x00, 0x00, 0x00,        // +0x8 lea 0x14(%rax),%rax
                  }));
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_TPOFF32, 4), {.S = 0x10}); }),
              HasSubstr("not in static TLS"));
}

TEST(Relocations, Size32) {
  Bytes data(4, 0);  // .data: .long x@SIZE + 4
  // Z + A = 0x40 + 4
  apply_relocation(data, site(R_X86_64_SIZE32, 0, "x", ".data"), {.A = 4, .Z = 0x40});
  EXPECT_EQ(data, (Bytes{0x44, 0x00, 0x00, 0x00}));
}

TEST(Relocations, LargeModelGotRelative) {
  Bytes text(8, 0);  // movabs $x@GOTOFF,%rax's imm64
  // GOTOFF64: S + A - GOT = 0x7ffff7a00000 - 0x555555603000
  apply_relocation(text, site(R_X86_64_GOTOFF64, 0), {.S = 0x7ffff7a00000, .GOT = 0x555555603000});
  EXPECT_EQ(text, (Bytes{0x00, 0xd0, 0x3f, 0xa2, 0xaa, 0x2a, 0x00, 0x00}));
  // GOTPC64: GOT + A - P = 0x555555603000 + 2 - 0x555555600003 = 0x2fff
  apply_relocation(text, site(R_X86_64_GOTPC64, 0, "_GLOBAL_OFFSET_TABLE_"),
                   {.A = 2, .P = 0x555555600003, .GOT = 0x555555603000});
  EXPECT_EQ(text, (Bytes{0xff, 0x2f, 0, 0, 0, 0, 0, 0}));
  // GOT64: G + A = 0x28
  apply_relocation(text, site(R_X86_64_GOT64, 0), {.G = 0x28});
  EXPECT_EQ(text, (Bytes{0x28, 0, 0, 0, 0, 0, 0, 0}));
}

TEST(Relocations, SmallFieldsAreRangeChecked) {
  Bytes data(2, 0);
  // R_X86_64_16: 0xffff (unsigned) and -0x8000 (signed) both fit; 0x10000 does not.
  apply_relocation(data, site(R_X86_64_16, 0, "x", ".data"), {.S = 0xffff});
  EXPECT_EQ(data, (Bytes{0xff, 0xff}));
  apply_relocation(data, site(R_X86_64_16, 0, "x", ".data"), {.S = 0, .A = -0x8000});
  EXPECT_EQ(data, (Bytes{0x00, 0x80}));
  EXPECT_THAT(error_of([&] { apply_relocation(data, site(R_X86_64_16, 0, "x", ".data"), {.S = 0x10000}); }),
              HasSubstr("R_X86_64_16 against 'x' (0x10000) does not fit"));
  // R_X86_64_PC8: a jump over at most 127 bytes forward.
  Bytes text = {0xeb, 0x00};  // +0x0 jmp x
  apply_relocation(text, site(R_X86_64_PC8, 1), {.S = 0x401080, .A = -1, .P = 0x401001});
  EXPECT_EQ(text, (Bytes{0xeb, 0x7e}));  // jmp 0x401080
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_PC8, 1), {.S = 0x401082, .A = -1, .P = 0x401001}); }),
              HasSubstr("R_X86_64_PC8 against 'x': target out of range"));
  // R_X86_64_8 with 0x100
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_8, 1), {.S = 0x100}); }), HasSubstr("does not fit"));
}

TEST(Relocations, PlaceOutsideSection) {
  Bytes text(4, 0);
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_PC32, 2), {}); }),
              HasSubstr("fix.o: .text+0x2: R_X86_64_PC32 against 'x': the place (4 bytes) lies outside its section"));
}

TEST(Relocations, UnsupportedTypesAreNamed) {
  Bytes text(8, 0);
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(R_X86_64_COPY, 0), {}); }),
              HasSubstr("R_X86_64_COPY against 'x': unsupported relocation type 5"));
  EXPECT_THAT(error_of([&] { apply_relocation(text, site(99, 0), {}); }), HasSubstr("unsupported relocation type 99"));
  EXPECT_EQ(relocation_name(R_X86_64_REX_GOTPCRELX), "R_X86_64_REX_GOTPCRELX");
  EXPECT_EQ(relocation_name(99), "R_X86_64_<99>");
}

}  // namespace
}  // namespace suture::link
