// Linking real patch objects (compiled by the build from fixtures/patch-*.c with
// the flags patch authors use) against the fixture target, then reading the
// linked bytes the way the CPU would: a call's rel32 leads to the function or to
// a stub whose slot holds it, a GOT load's rel32 leads to a slot holding the
// symbol's address, a TLS access to the right {module, offset} pair or offset.
#include "link/link-patch.h"

#include <elf.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/error.h"
#include "fixture-target.h"

namespace suture::link {
namespace {

using namespace fixtures;
using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;
using Bindings = std::map<std::string, std::pair<std::string, std::string>>;

// Next to the PIE executable at kExeBias: the target's own code is in rel32 reach.
constexpr Placement kNear = {RemoteAddr(0x555555600000), RemoteAddr(0x555555700000), RemoteAddr(0x555555800000)};
// Next to a non-PIE executable at kLowExeBias.
constexpr Placement kLow = {RemoteAddr(0x10000000), RemoteAddr(0x10100000), RemoteAddr(0x10200000)};
// More than 2 GiB away from everything.
constexpr Placement kFar = {RemoteAddr(0x200000000000), RemoteAddr(0x200000100000), RemoteAddr(0x200000200000)};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

elf::ElfFile open_patch(const std::string& name) { return elf::ElfFile::open(SUTURE_PATCH_DIR "/" + name); }

// The linked parts as the target will see them, and the CPU's reading of them.
class Image {
 public:
  explicit Image(const LinkedPatch& patch) : patch_(patch) {}

  std::span<const uint8_t> at(RemoteAddr a, size_t n) const {
    const std::pair<RemoteAddr, const std::vector<uint8_t>*> parts[] = {
        {patch_.placement.text, &patch_.text}, {patch_.placement.rodata, &patch_.rodata},
        {patch_.placement.data, &patch_.data}};
    for (const auto& [start, bytes] : parts)
      if (a >= start && a + static_cast<int64_t>(n) <= start + static_cast<int64_t>(bytes->size()))
        return std::span(*bytes).subspan(static_cast<size_t>(a - start), n);
    throw std::out_of_range(fmt::format("{} is not in the patch", a));
  }
  uint64_t u64(RemoteAddr a) const { return load<uint64_t>(a); }
  int32_t s32(RemoteAddr a) const { return load<int32_t>(a); }
  bool in(RemoteAddr part, uint64_t size, RemoteAddr a) const { return a >= part && a < part + static_cast<int64_t>(size); }
  bool in_text(RemoteAddr a) const { return in(patch_.placement.text, patch_.sizes.text, a); }
  bool in_rodata(RemoteAddr a) const { return in(patch_.placement.rodata, patch_.sizes.rodata, a); }
  bool in_data(RemoteAddr a) const { return in(patch_.placement.data, patch_.sizes.data, a); }

  // The destination of a rel32 followed by `immediate` bytes to the end of
  // its instruction (0 for call, jmp, a load).
  RemoteAddr rel32_target(RemoteAddr place, int immediate = 0) const { return place + 4 + immediate + s32(place); }
  // If `a` is our far-call stub (ff 25: jmp *slot(%rip)), what its slot holds.
  std::optional<RemoteAddr> stub_destination(RemoteAddr a) const {
    if (!in_text(a)) return std::nullopt;
    auto b = at(a, 6);
    if (b[0] != 0xff || b[1] != 0x25) return std::nullopt;
    const RemoteAddr slot = a + 6 + s32(a + 2);
    EXPECT_TRUE(in_rodata(slot)) << "stub slot " << to_string(slot) << " is not read-only";
    return RemoteAddr(u64(slot));
  }
  // Where a call with its rel32 at `place` ends up, through a stub if any.
  RemoteAddr call_destination(RemoteAddr place) const {
    const RemoteAddr target = rel32_target(place);
    return stub_destination(target).value_or(target);
  }
  // What the GOT slot a rip-relative load at `place` reads holds.
  RemoteAddr got_slot_value(RemoteAddr place, int immediate = 0) const {
    const RemoteAddr slot = rel32_target(place, immediate);
    EXPECT_TRUE(in_rodata(slot)) << "GOT slot " << to_string(slot) << " is not read-only";
    return RemoteAddr(u64(slot));
  }

 private:
  template <typename T>
  T load(RemoteAddr a) const {
    T value;
    std::memcpy(&value, at(a, sizeof value).data(), sizeof value);
    return value;
  }
  const LinkedPatch& patch_;
};

struct Site {
  RemoteAddr place;
  elf::Relocation rel;
};

// The relocations of `function` (by its symbol) against `symbol`, at their final places.
std::vector<Site> sites(const elf::ElfFile& object, const LinkedPatch& patch, std::string_view function,
                        std::string_view symbol) {
  const elf::Symbol* f = nullptr;
  for (const elf::Symbol& s : object.symbols())
    if (s.name == function && s.defined()) f = &s;
  if (!f) throw std::out_of_range(fmt::format("no function {}", function));
  const RemoteAddr section_start = patch.defined.at(std::string(function)) - static_cast<int64_t>(f->value);
  std::vector<Site> out;
  for (const elf::Relocation& rel : object.relocations_for(object.sections()[f->shndx]))
    if (rel.offset >= f->value && rel.offset < f->value + f->size && object.symbols()[rel.symbol].name == symbol)
      out.push_back({section_start + static_cast<int64_t>(rel.offset), rel});
  if (out.empty()) throw std::out_of_range(fmt::format("no relocation against {} in {}", symbol, function));
  return out;
}

Site site(const elf::ElfFile& object, const LinkedPatch& patch, std::string_view function, std::string_view symbol) {
  return sites(object, patch, function, symbol).front();
}

RemoteAddr dynsym(const elf::ElfFile& file, uint64_t bias, std::string_view name) {
  return RemoteAddr(bias + symbol_of(file.dynamic_symbols(), name).value);
}

RemoteAddr lib_symbol(std::string_view name) { return dynsym(files().lib, kLibBias, name); }

RemoteAddr count_of_target_a(uint64_t bias = kExeBias) {
  for (const elf::Symbol& s : files().exe.symbols())
    if (s.name == "count" && s.file == "target-a.c") return RemoteAddr(bias + s.value);
  throw std::out_of_range("no count in target-a.c");
}

// What patch-pic.c compiled by any compiler must link to.
void check_pic_patch(const std::string& name, bool through_plt) {
  SCOPED_TRACE(name);
  IfuncLog log;
  const TargetSymbols target = make_target({}, &log);
  const elf::ElfFile object = open_patch(name);
  const Bindings bindings = {{"a_local_count", {"count", "target-a.c"}}};
  const LinkedPatch patch = link_patch(object, target, kExe, bindings, kNear);
  const Image image(patch);

  auto call = [&](std::string_view callee) {
    const Site s = site(object, patch, "patch_fixed", callee);
    // -fno-plt: call *callee@GOTPCREL(%rip) (ff 15), always through the slot.
    if (!through_plt) {
      EXPECT_EQ(Bytes(image.at(s.place - 2, 2).begin(), image.at(s.place - 2, 2).end()), (Bytes{0xff, 0x15}));
      return image.got_slot_value(s.place);
    }
    return image.call_destination(s.place);
  };
  // Near: straight to the executable's function, no stub.
  if (through_plt) {
    EXPECT_EQ(image.rel32_target(site(object, patch, "patch_fixed", "exe_function").place), exe_symbol("exe_function"));
  }
  EXPECT_EQ(call("exe_function"), exe_symbol("exe_function"));
  // Far: through a stub whose slot holds the library's function.
  EXPECT_EQ(call("lib_function"), lib_symbol("lib_function"));
  // IFUNCs: the resolvers ran, and the calls land on what they returned.
  // memcpy@@GLIBC_2.14, not the memmove-like memcpy@GLIBC_2.2.5 old binaries get.
  const RemoteAddr memcpy_resolver(kLibcBias + symbol_of(files().libc.dynamic_symbols(), "memcpy", "GLIBC_2.14").value);
  const RemoteAddr strchr_resolver = dynsym(files().libc, kLibcBias, "strchr");
  EXPECT_THAT(log.resolvers, ::testing::UnorderedElementsAre(memcpy_resolver, strchr_resolver));
  EXPECT_EQ(call("memcpy"), memcpy_resolver + kIfuncDelta);
  EXPECT_EQ(call("strchr"), strchr_resolver + kIfuncDelta);

  // Data through GOT slots: the executable's, the library's, and a static of
  // target-a.c bound by file.
  EXPECT_EQ(image.got_slot_value(site(object, patch, "patch_fixed", "exe_global").place), exe_symbol("exe_global"));
  EXPECT_EQ(image.got_slot_value(site(object, patch, "patch_fixed", "lib_data").place), lib_symbol("lib_data"));
  EXPECT_EQ(image.got_slot_value(site(object, patch, "patch_fixed", "a_local_count").place), count_of_target_a());
  EXPECT_EQ(patch.imports.at("a_local_count"), count_of_target_a());
  EXPECT_EQ(patch.imports.at("lib_function"), lib_symbol("lib_function"));
  EXPECT_EQ(patch.imports.count("patch_fixed"), 0u);

  // The patch's own string literal, in rodata.
  const elf::Relocation lea = object.relocations_for(object.sections()[symbol_of(object.symbols(), "patch_message").shndx])
                                  .back();
  const RemoteAddr message_place = patch.defined.at("patch_message") + static_cast<int64_t>(lea.offset) -
                                   static_cast<int64_t>(symbol_of(object.symbols(), "patch_message").value);
  const RemoteAddr message = image.rel32_target(message_place);
  EXPECT_TRUE(image.in_rodata(message));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(image.at(message, 7).data())), "fixed!");

  // Its functions are in text; the SUTURE_REPLACE record is not loaded.
  EXPECT_TRUE(image.in_text(patch.defined.at("patch_fixed")));
  EXPECT_TRUE(image.in_text(patch.defined.at("patch_message")));
  for (const auto& [symbol, address] : patch.defined) EXPECT_THAT(symbol, ::testing::Not(HasSubstr("suture_replace")));
  // The static counter (.bss) is in data.
  EXPECT_TRUE(image.in_data(patch.defined.at("calls")));
}

TEST(LinkPatch, GccPic) { check_pic_patch("patch-pic.o", true); }
TEST(LinkPatch, GccPicWithoutPlt) { check_pic_patch("patch-pic-noplt.o", false); }
TEST(LinkPatch, ClangPic) {
  if (!SUTURE_HAVE_CLANG_PATCHES) GTEST_SKIP() << "no clang";
  check_pic_patch("patch-pic-clang.o", true);
}

TEST(LinkPatch, SizesAreMeasuredAndPageRounded) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-pic.o");
  const PartSizes measured = measure(object);
  const LinkedPatch patch = link_patch(object, target, kExe, {{"a_local_count", {"count", "target-a.c"}}}, kNear);
  EXPECT_EQ(patch.sizes.text, measured.text);
  EXPECT_EQ(patch.sizes.rodata, measured.rodata);
  EXPECT_EQ(patch.sizes.data, measured.data);
  EXPECT_EQ(patch.text.size(), measured.text);
  EXPECT_EQ(patch.rodata.size(), measured.rodata);
  EXPECT_EQ(patch.data.size(), measured.data);
  for (uint64_t size : {measured.text, measured.rodata, measured.data}) EXPECT_EQ(size % 4096, 0u);
  EXPECT_EQ(measured.text, 4096u);
  EXPECT_EQ(measured.total(), 3 * 4096u);
}

TEST(LinkPatch, FarPlacementCallsTheExecutableThroughStubs) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-pic.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {{"a_local_count", {"count", "target-a.c"}}}, kFar);
  const Image image(patch);
  const RemoteAddr place = site(object, patch, "patch_fixed", "exe_function").place;
  EXPECT_TRUE(image.in_text(image.rel32_target(place)));  // the stub
  EXPECT_EQ(image.call_destination(place), exe_symbol("exe_function"));
}

TEST(LinkPatch, PieDataIsDirectCallsFarAreStubbed) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-pie.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  // movl exe_global(%rip),%eax: R_X86_64_PC32, straight into the executable.
  EXPECT_EQ(image.rel32_target(site(object, patch, "patch_pie", "exe_global").place), exe_symbol("exe_global"));
  EXPECT_EQ(image.rel32_target(site(object, patch, "patch_pie", "exe_function").place), exe_symbol("exe_function"));
  EXPECT_EQ(image.call_destination(site(object, patch, "patch_pie", "lib_function").place), lib_symbol("lib_function"));
}

TEST(LinkPatch, PieDataOutOfReachAsksForFpic) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-pie.o");
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {}, kFar); }),
              HasSubstr(": .text+0x27: R_X86_64_PC32 against 'exe_global': target out of range"));
}

TEST(LinkPatch, NonPicFitsNextToANonPieExecutable) {
  const TargetSymbols target = make_target({.exe_bias = kLowExeBias});
  const elf::ElfFile object = open_patch("patch-nopic.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kLow);
  const Image image(patch);
  // mov $exe_global,%eax: R_X86_64_32
  const RemoteAddr address_place = site(object, patch, "patch_global_address", "exe_global").place;
  EXPECT_EQ(static_cast<uint32_t>(image.s32(address_place)), exe_symbol("exe_global", kLowExeBias).value());
  const RemoteAddr function_place = site(object, patch, "patch_function_address", "exe_function").place;
  EXPECT_EQ(static_cast<uint32_t>(image.s32(function_place)), exe_symbol("exe_function", kLowExeBias).value());
  EXPECT_EQ(image.rel32_target(site(object, patch, "patch_nopic_call", "exe_function").place),
            exe_symbol("exe_function", kLowExeBias));
}

TEST(LinkPatch, NonPicAgainstPieAsksForFpic) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-nopic.o");
  const std::string e = error_of([&] { link_patch(object, target, kExe, {}, kNear); });
  EXPECT_THAT(e, HasSubstr("patch-nopic.o: .text+0x1: R_X86_64_32 against 'exe_global' (0x5555"));
  EXPECT_THAT(e, HasSubstr(") does not fit; compile the patch with -fPIC"));
}

TEST(LinkPatch, LargeModelPic) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-large.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kFar);
  const Image image(patch);
  // movabs $_GLOBAL_OFFSET_TABLE_-.,%r11 (GOTPC64, A = 2 for the movabs's
  // opcode bytes): GOT = value - A + place.
  const Site gotpc = site(object, patch, "patch_large", "_GLOBAL_OFFSET_TABLE_");
  const RemoteAddr GOT = gotpc.place + static_cast<int64_t>(image.u64(gotpc.place)) - gotpc.rel.addend;
  EXPECT_TRUE(image.in_rodata(GOT));
  // movabs $exe_function@PLTOFF,%rax; add GOT: the function itself.
  const Site pltoff = site(object, patch, "patch_large", "exe_function");
  EXPECT_EQ(GOT + static_cast<int64_t>(image.u64(pltoff.place)), exe_symbol("exe_function"));
  // movabs $exe_global@GOT,%rdx; mov (GOT,%rdx),%rdx: a slot holding the address.
  const Site got64 = site(object, patch, "patch_large", "exe_global");
  EXPECT_EQ(RemoteAddr(image.u64(GOT + static_cast<int64_t>(image.u64(got64.place)))), exe_symbol("exe_global"));
  // movabs $local_counter@GOTOFF,%rcx: GOT-relative address of our own .bss.
  const Site gotoff = site(object, patch, "patch_large", "local_counter");
  EXPECT_EQ(GOT + static_cast<int64_t>(image.u64(gotoff.place)), patch.defined.at("local_counter"));
}

TEST(LinkPatch, LargeModelNonPic) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-large-nopic.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kFar);
  const Image image(patch);
  // movabs $exe_function,%rax and friends: R_X86_64_64.
  EXPECT_EQ(RemoteAddr(image.u64(site(object, patch, "patch_large", "exe_function").place)), exe_symbol("exe_function"));
  EXPECT_EQ(RemoteAddr(image.u64(site(object, patch, "patch_large", "exe_global").place)), exe_symbol("exe_global"));
}

TEST(LinkPatch, CxxVtablesComdatsAndTheRuntime) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-cxx.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  // The vtable (a COMDAT in .data.rel.ro) is read-only once linked; its third
  // entry is Square::area.
  const RemoteAddr vtable = patch.defined.at("_ZTVN3fix6SquareE");
  EXPECT_TRUE(image.in_rodata(vtable));
  EXPECT_EQ(RemoteAddr(image.u64(vtable + 0x20)), patch.defined.at("_ZNK3fix6Square4areaEv"));
  EXPECT_EQ(RemoteAddr(image.u64(vtable + 0x18)), patch.defined.at("_ZN3fix6SquareD0Ev"));
  // The deleting destructor calls libstdc++'s operator delete, through a stub.
  EXPECT_EQ(image.call_destination(site(object, patch, "_ZN3fix6SquareD0Ev", "_ZdlPvm").place),
            dynsym(files().cxx, kCxxBias, "_ZdlPvm"));
  // The cleanup path (patch_cxx.cold) resumes unwinding in libgcc_s.
  EXPECT_EQ(image.call_destination(site(object, patch, "_Z9patch_cxxi.cold", "_Unwind_Resume").place),
            dynsym(files().gcc, kGccBias, "_Unwind_Resume"));
  EXPECT_EQ(image.call_destination(site(object, patch, "_Z9patch_cxxi", "exe_function").place),
            exe_symbol("exe_function"));
}

// The records of a linked .eh_frame as an unwinder reads them.
struct UnwindRecords {
  std::vector<RemoteAddr> personalities;  // per CIE with a personality: where the indirect pointer is
  std::vector<std::pair<RemoteAddr, uint32_t>> ranges;  // per FDE: pc_begin, pc_range
  std::vector<RemoteAddr> lsdas;          // per FDE with an LSDA
  bool terminated = false;
};

// Reads CIEs with augmentation "zR" or "zPLR" (what gcc emits for x86-64), with
// pcrel sdata4 pointers, personality indirect.
UnwindRecords read_unwind_records(const Image& image, RemoteRange eh_frame) {
  UnwindRecords out;
  std::map<RemoteAddr, bool> cie_has_lsda;
  RemoteAddr at = eh_frame.start;
  auto uleb = [&](RemoteAddr& p) {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      uint8_t b = image.at(p, 1)[0];
      p += 1;
      v |= uint64_t{b & 0x7fu} << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (at < eh_frame.end()) {
    const uint32_t length = static_cast<uint32_t>(image.s32(at));
    if (length == 0) {
      out.terminated = at + 4 == eh_frame.end();
      break;
    }
    const RemoteAddr body = at + 4;
    const uint32_t id = static_cast<uint32_t>(image.s32(body));
    if (id == 0) {
      RemoteAddr p = body + 5;  // after the id and the version
      std::string augmentation;
      while (char c = static_cast<char>(image.at(p, 1)[0])) {
        augmentation += c;
        p += 1;
      }
      p += 1;
      uleb(p);  // code alignment
      uleb(p);  // data alignment (sleb, but one byte either way)
      uleb(p);  // return address column
      uleb(p);  // augmentation length
      bool lsda = false;
      for (char c : augmentation.substr(1)) {
        const uint8_t encoding = image.at(p, 1)[0];
        p += 1;
        if (c == 'P') {
          EXPECT_EQ(encoding, 0x9b);  // indirect pcrel sdata4
          out.personalities.push_back(p + image.s32(p));
          p += 4;
        } else if (c == 'L') {
          EXPECT_EQ(encoding, 0x1b);
          lsda = true;
        } else {
          EXPECT_EQ(c, 'R');
          EXPECT_EQ(encoding, 0x1b);
        }
      }
      cie_has_lsda[at] = lsda;
    } else {
      const RemoteAddr cie = body - static_cast<int64_t>(id);
      EXPECT_TRUE(cie_has_lsda.count(cie)) << "FDE at " << to_string(at) << " has no CIE before it";
      const RemoteAddr begin = body + 4 + image.s32(body + 4);
      out.ranges.emplace_back(begin, static_cast<uint32_t>(image.s32(body + 8)));
      RemoteAddr p = body + 12;
      const uint64_t augmentation = uleb(p);
      if (cie_has_lsda[cie] && augmentation == 4) out.lsdas.push_back(p + image.s32(p));
    }
    at = body + static_cast<int64_t>(length);
  }
  return out;
}

TEST(LinkPatch, CxxUnwindTablesAreLinkedIntoRodata) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-cxx.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  ASSERT_FALSE(patch.eh_frame.empty());
  EXPECT_TRUE(image.in_rodata(patch.eh_frame.start));
  EXPECT_TRUE(image.in_rodata(patch.eh_frame.end() - 1));
  const UnwindRecords records = read_unwind_records(image, patch.eh_frame);
  EXPECT_TRUE(records.terminated) << "no zero terminator at the end of the linked .eh_frame";

  // Every function of the patch, the .cold part with the cleanup included, has
  // its FDE, exactly covering it.
  for (const char* function : {"_Z9patch_cxxi", "_Z9patch_cxxi.cold", "_ZN3fix7area_ofERKNS_5ShapeE",
                               "_ZNK3fix6Square4areaEv", "_ZN3fix6SquareD0Ev"}) {
    SCOPED_TRACE(function);
    const RemoteAddr start = patch.defined.at(function);
    const auto fde = std::find_if(records.ranges.begin(), records.ranges.end(),
                                  [&](const auto& r) { return r.first == start; });
    ASSERT_NE(fde, records.ranges.end());
    EXPECT_EQ(fde->second, symbol_of(object.symbols(), function).size);
  }
  // The personality is libstdc++'s, reached through DW.ref.__gxx_personality_v0,
  // which is read-only once linked.
  ASSERT_EQ(records.personalities.size(), 1u);
  EXPECT_EQ(records.personalities[0], patch.defined.at("DW.ref.__gxx_personality_v0"));
  EXPECT_TRUE(image.in_rodata(records.personalities[0]));
  EXPECT_EQ(RemoteAddr(image.u64(records.personalities[0])), dynsym(files().cxx, kCxxBias, "__gxx_personality_v0"));
  // patch_cxx's cleanup has its LSDA in the linked .gcc_except_table.
  ASSERT_NE(object.find_section(".gcc_except_table"), nullptr);
  ASSERT_FALSE(records.lsdas.empty());
  for (RemoteAddr lsda : records.lsdas) EXPECT_TRUE(image.in_rodata(lsda));

  // The block for the unwinder's bookkeeping: zeroed, writable.
  EXPECT_EQ(patch.unwind_block.size, kUnwindBlockSize);
  EXPECT_TRUE(image.in_data(patch.unwind_block.start));
  EXPECT_EQ(patch.unwind_block.start.value() % 16, 0u);
  for (uint64_t k = 0; k < kUnwindBlockSize; k += 8) EXPECT_EQ(image.u64(patch.unwind_block.start + k), 0u);
}

TEST(LinkPatch, AnObjectWithoutUnwindTablesLinksNone) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-asm.o");
  ASSERT_EQ(object.find_section(".eh_frame"), nullptr);
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  EXPECT_TRUE(patch.eh_frame.empty());
  EXPECT_EQ(patch.unwind_block.size, kUnwindBlockSize);
}

void check_tls_general_dynamic(const std::string& name) {
  SCOPED_TRACE(name);
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch(name);
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  // data16 lea x@tlsgd(%rip),%rdi: a {module id, offset} pair in rodata.
  auto pair = [&](std::string_view function, std::string_view symbol) {
    const RemoteAddr at = image.rel32_target(site(object, patch, function, symbol).place);
    EXPECT_TRUE(image.in_rodata(at));
    return std::make_pair(image.u64(at), image.u64(at + 8));
  };
  EXPECT_EQ(pair("patch_exe_tls", "exe_tls"), std::make_pair(uint64_t{1}, symbol_of(files().exe.symbols(), "exe_tls").value));
  EXPECT_EQ(pair("patch_lib_tls", "lib_tls"),
            std::make_pair(uint64_t{2}, symbol_of(files().lib.dynamic_symbols(), "lib_tls").value));
  // call __tls_get_addr@PLT: ld.so's, through one shared stub.
  const RemoteAddr tls_get_addr = dynsym(files().ldso, kLdsoBias, "__tls_get_addr");
  const RemoteAddr first = site(object, patch, "patch_exe_tls", "__tls_get_addr").place;
  const RemoteAddr second = site(object, patch, "patch_lib_tls", "__tls_get_addr").place;
  EXPECT_EQ(image.call_destination(first), tls_get_addr);
  EXPECT_EQ(image.rel32_target(first), image.rel32_target(second));
}

TEST(LinkPatch, TlsGeneralDynamic) { check_tls_general_dynamic("patch-tls-gd.o"); }
TEST(LinkPatch, ClangTlsGeneralDynamic) {
  if (!SUTURE_HAVE_CLANG_PATCHES) GTEST_SKIP() << "no clang";
  check_tls_general_dynamic("patch-tls-gd-clang.o");
}

TEST(LinkPatch, TlsInitialExec) {
  const elf::ElfFile object = open_patch("patch-tls-ie.o");
  const uint64_t exe_tls = symbol_of(files().exe.symbols(), "exe_tls").value;
  const uint64_t lib_tls = symbol_of(files().lib.dynamic_symbols(), "lib_tls").value;
  // With the library in static TLS, each slot holds the offset from %fs:0.
  const TargetSymbols target = make_target({.lib_tls_offset = kLibTlsOffset});
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  EXPECT_EQ(image.got_slot_value(site(object, patch, "patch_exe_tls", "exe_tls").place),
            RemoteAddr(exe_tls - kExeTlsOffset));
  EXPECT_EQ(image.got_slot_value(site(object, patch, "patch_lib_tls", "lib_tls").place),
            RemoteAddr(lib_tls - kLibTlsOffset));
  // With the library's TLS allocated on demand there is no fixed offset.
  const TargetSymbols dynamic = make_target();
  EXPECT_THAT(error_of([&] { link_patch(object, dynamic, kExe, {}, kNear); }),
              HasSubstr("R_X86_64_GOTTPOFF against 'lib_tls': thread-local 'lib_tls' of libfixture.so is in dynamic "
                        "TLS; compile the patch with -fPIC (general-dynamic TLS)"));
}

void check_tls_descriptors(const std::string& name) {
  SCOPED_TRACE(name);
  const elf::ElfFile object = open_patch(name);
  const TargetSymbols target = make_target({.lib_tls_offset = kLibTlsOffset});
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  const uint64_t exe_tls = symbol_of(files().exe.symbols(), "exe_tls").value;
  for (const Site& s : sites(object, patch, "patch_exe_tls", "exe_tls")) {
    if (s.rel.type == R_X86_64_GOTPC32_TLSDESC) {
      // lea exe_tls@tlsdesc(%rip),%rax became mov exe_tls@gottpoff(%rip),%rax
      EXPECT_EQ(Bytes(image.at(s.place - 3, 3).begin(), image.at(s.place - 3, 3).end()), (Bytes{0x48, 0x8b, 0x05}));
      EXPECT_EQ(image.got_slot_value(s.place), RemoteAddr(exe_tls - kExeTlsOffset));
    } else {
      // call *exe_tls@tlscall(%rax) became xchg %ax,%ax
      ASSERT_EQ(s.rel.type, R_X86_64_TLSDESC_CALL);
      EXPECT_EQ(Bytes(image.at(s.place, 2).begin(), image.at(s.place, 2).end()), (Bytes{0x66, 0x90}));
    }
  }
  const TargetSymbols dynamic = make_target();
  EXPECT_THAT(error_of([&] { link_patch(object, dynamic, kExe, {}, kNear); }),
              HasSubstr("R_X86_64_GOTPC32_TLSDESC against 'lib_tls': thread-local 'lib_tls' of libfixture.so is in "
                        "dynamic TLS; compile the patch with -mtls-dialect=gnu"));
}

TEST(LinkPatch, TlsDescriptorsRelaxedToInitialExec) { check_tls_descriptors("patch-tls-desc.o"); }

TEST(LinkPatch, HandWrittenRelocations) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-asm.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  // e8 + PC32 against a far function: the call goes through a stub.
  const RemoteAddr call = site(object, patch, "patch_asm_call", "lib_function").place;
  EXPECT_TRUE(image.in_text(image.rel32_target(call)));
  EXPECT_EQ(image.call_destination(call), lib_symbol("lib_function"));
  // mov $lib_data@SIZE,%eax and movabs $lib_data@SIZE,%rdx: 4 bytes.
  for (const Site& s : sites(object, patch, "patch_asm_sizes", "lib_data"))
    EXPECT_EQ(s.rel.type == R_X86_64_SIZE32 ? image.s32(s.place) : static_cast<int64_t>(image.u64(s.place)), 4);
  // Local dynamic: the pair names the executable's block, offset 0; the
  // variable's offset in the block comes from DTPOFF32.
  const uint64_t exe_tls = symbol_of(files().exe.symbols(), "exe_tls").value;
  for (const Site& s : sites(object, patch, "patch_asm_tls", "exe_tls")) {
    if (s.rel.type == R_X86_64_TLSLD) {
      const RemoteAddr pair = image.rel32_target(s.place);
      EXPECT_EQ(image.u64(pair), 1u);
      EXPECT_EQ(image.u64(pair + 8), 0u);
    } else if (s.rel.type == R_X86_64_DTPOFF32) {
      EXPECT_EQ(image.s32(s.place), static_cast<int64_t>(exe_tls));
    } else {
      ASSERT_EQ(s.rel.type, R_X86_64_TPOFF32);  // %fs:exe_tls@tpoff
      EXPECT_EQ(image.s32(s.place), static_cast<int64_t>(exe_tls) - kExeTlsOffset);
    }
  }
  // .quad lib_function - . and .quad exe_tls@dtpoff, in a (read-only) table.
  const RemoteAddr table = patch.defined.at("patch_asm_table");
  EXPECT_TRUE(image.in_rodata(table));
  EXPECT_EQ(table + static_cast<int64_t>(image.u64(table)), lib_symbol("lib_function"));
  EXPECT_EQ(image.u64(table + 8), exe_tls);
}

TEST(LinkPatch, LocalExecReachesOnlyTheExecutable) {
  const TargetSymbols target = make_target({.lib_tls_offset = kLibTlsOffset});
  const elf::ElfFile object = open_patch("patch-local-exec.o");
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {}, kNear); }),
              HasSubstr("R_X86_64_TPOFF32 against 'lib_tls': thread-local 'lib_tls' of libfixture.so: local-exec TLS "
                        "reaches only the executable's own variables; compile the patch with -fPIC"));
}

TEST(LinkPatch, CommonSymbolsGetDataSpace) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-common.o");
  ASSERT_EQ(symbol_of(object.symbols(), "patch_common_var").shndx, SHN_COMMON);
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  const RemoteAddr var = patch.defined.at("patch_common_var");
  EXPECT_TRUE(image.in_data(var));
  EXPECT_EQ(image.got_slot_value(site(object, patch, "patch_common", "patch_common_var").place), var);
}

TEST(LinkPatch, UndefinedWeakIsNull) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-weak.o");
  const LinkedPatch patch = link_patch(object, target, kExe, {}, kNear);
  const Image image(patch);
  // cmpq $0x0,maybe_there@GOTPCREL(%rip): a 1-byte immediate follows the rel32.
  const Site compare = site(object, patch, "patch_bad", "maybe_there");
  ASSERT_EQ(compare.rel.type, R_X86_64_GOTPCREL);
  EXPECT_EQ(image.got_slot_value(compare.place, 1), RemoteAddr(0));
}

TEST(LinkPatch, UndefinedSymbolIsNamed) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-undefined.o");
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {}, kNear); }),
              HasSubstr("patch-undefined.o: undefined symbol 'does_not_exist' (not found in the target's objects: "
                        "link_fixture_exe, libfixture.so, "));
}

TEST(LinkPatch, AmbiguousStaticAsksForBinding) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-pic.o");
  // Without the binding, a_local_count is undefined; bound to a bare "count", ambiguous.
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {}, kNear); }),
              HasSubstr("undefined symbol 'a_local_count'"));
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {{"a_local_count", {"count", ""}}}, kNear); }),
              HasSubstr("symbol 'count' is defined several times in link_fixture_exe"));
}

TEST(LinkPatch, NewThreadLocalsAreRefused) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-new-tls.o");
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {}, kNear); }),
              HasSubstr("patch-new-tls.o: 'patch_tls': new thread-local variables are not supported"));
}

TEST(LinkPatch, PlacementMustBePageAligned) {
  const TargetSymbols target = make_target();
  const elf::ElfFile object = open_patch("patch-pie.o");
  Placement placement = kNear;
  placement.data = placement.data + 8;
  EXPECT_THAT(error_of([&] { link_patch(object, target, kExe, {}, placement); }), HasSubstr("is not page aligned"));
}

TEST(LinkPatch, ExecutablesAreNotPatches) {
  const TargetSymbols target = make_target();
  EXPECT_THAT(error_of([&] { link_patch(files().lib, target, kExe, {}, kNear); }),
              HasSubstr("not a relocatable object"));
}

}  // namespace
}  // namespace suture::link
