// The transition stubs (see transition-stubs.h), written as byte arrays with
// their disassembly beside them. Labels are resolved by a two-pass-free trick:
// every forward branch is a rel8 whose target is known from the fixed sizes of
// what lies between, so each stub is emitted in one pass with offsets checked.
#include "redirect/transition-stubs.h"

#include <Zydis/Zydis.h>

#include <cassert>
#include <limits>

#include "common/error.h"
#include "redirect/entry-jump.h"

namespace suture::redirect {
namespace {

class Writer {
 public:
  explicit Writer(RemoteAddr at) : at_(at) {}

  void bytes(std::initializer_list<uint8_t> b) { code_.insert(code_.end(), b); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) code_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  // A rel32 field whose instruction ends right after it, pointing at `to`.
  void rel32_to(RemoteAddr to) {
    RemoteAddr next = here() + 4;
    int64_t distance = to - next;
    if (distance < std::numeric_limits<int32_t>::min() || distance > std::numeric_limits<int32_t>::max())
      fail("transition stub at {}: {} is out of rel32 reach", at_, to);
    u32(static_cast<uint32_t>(static_cast<int32_t>(distance)));
  }
  // A rel8 field to be patched once the label is placed.
  size_t rel8_placeholder() {
    code_.push_back(0);
    return code_.size() - 1;
  }
  void place(size_t placeholder) {
    int64_t distance = static_cast<int64_t>(code_.size()) - static_cast<int64_t>(placeholder + 1);
    assert(distance >= -128 && distance <= 127);
    code_[placeholder] = static_cast<uint8_t>(static_cast<int8_t>(distance));
  }
  void back_to(size_t label) {  // rel8 field jumping back to `label`
    int64_t distance = static_cast<int64_t>(label) - static_cast<int64_t>(code_.size() + 1);
    assert(distance >= -128 && distance <= 127);
    code_.push_back(static_cast<uint8_t>(static_cast<int8_t>(distance)));
  }
  size_t label() const { return code_.size(); }
  RemoteAddr here() const { return at_ + static_cast<int64_t>(code_.size()); }
  std::vector<uint8_t> take() { return std::move(code_); }

 private:
  RemoteAddr at_;
  std::vector<uint8_t> code_;
};

void check(const TransitionTables& t) {
  if (t.slots == 0 || (t.slots & (t.slots - 1)) != 0) fail("internal: transition table size {} is not a power of two", t.slots);
}

// Loads the thread's tid into eax and `table` into rdx, and the first slot
// index into ecx.
void start_probe(Writer& w, const TransitionTables& t, RemoteAddr table) {
  w.bytes({0x64, 0x8b, 0x04, 0x25});  // mov eax, fs:[tid_offset]
  w.u32(t.tid_offset);
  w.bytes({0x48, 0x8d, 0x15});        // lea rdx, [rip + table]
  w.rel32_to(table);
  w.bytes({0x89, 0xc1});              // mov ecx, eax
  w.bytes({0x81, 0xe1});              // and ecx, slots - 1
  w.u32(t.slots - 1);
}

// Looks the tid (eax) up in the table at rdx from slot ecx: jumps to the
// returned placeholder's label when found; falls through when an empty slot
// ends the search.
size_t probe(Writer& w, const TransitionTables& t) {
  size_t loop = w.label();
  w.bytes({0x39, 0x04, 0x8a});        // cmp [rdx + rcx*4], eax
  w.bytes({0x74});                    // je found
  size_t found = w.rel8_placeholder();
  w.bytes({0x83, 0x3c, 0x8a, 0x00});  // cmp dword [rdx + rcx*4], 0
  w.bytes({0x74});                    // je not_found
  size_t not_found = w.rel8_placeholder();
  w.bytes({0xff, 0xc1});              // inc ecx
  w.bytes({0x81, 0xe1});              // and ecx, slots - 1
  w.u32(t.slots - 1);
  w.bytes({0xeb});                    // jmp loop
  w.back_to(loop);
  w.place(not_found);
  return found;
}

}  // namespace

std::vector<uint8_t> encode_dispatcher(RemoteAddr at, const TransitionTables& tables, RemoteAddr new_code,
                                       RemoteAddr old_code, RemoteAddr old_calls_counter) {
  check(tables);
  Writer w(at);
  w.bytes({0x50, 0x51, 0x52});  // push rax; push rcx; push rdx
  start_probe(w, tables, tables.switched_by_thread);
  size_t found_1 = probe(w, tables);
  w.bytes({0x48, 0x8d, 0x15});  // lea rdx, [rip + switched_by_suture]
  w.rel32_to(tables.switched_by_suture);
  w.bytes({0x89, 0xc1});        // mov ecx, eax
  w.bytes({0x81, 0xe1});        // and ecx, slots - 1
  w.u32(tables.slots - 1);
  size_t found_2 = probe(w, tables);
  // old: count the call, restore, run the old function
  w.bytes({0xf0, 0x48, 0xff, 0x05});  // lock inc qword [rip + counter]
  w.rel32_to(old_calls_counter);
  w.bytes({0x5a, 0x59, 0x58});        // pop rdx; pop rcx; pop rax
  w.bytes({0xe9});                    // jmp old_code
  w.rel32_to(old_code);
  // found: restore, run the new function
  w.place(found_1);
  w.place(found_2);
  w.bytes({0x5a, 0x59, 0x58});  // pop rdx; pop rcx; pop rax
  w.bytes({0xe9});              // jmp new_code
  w.rel32_to(new_code);
  return w.take();
}

std::vector<uint8_t> encode_safe_point_hook(RemoteAddr at, const TransitionTables& tables, RemoteAddr continue_to) {
  check(tables);
  Writer w(at);
  w.bytes({0x50, 0x51, 0x52, 0x56});  // push rax; push rcx; push rdx; push rsi
  start_probe(w, tables, tables.switched_by_thread);
  w.bytes({0x89, 0xc6});              // mov esi, eax            (the tid)
  size_t loop = w.label();
  w.bytes({0x39, 0x34, 0x8a});        // cmp [rdx + rcx*4], esi
  w.bytes({0x74});                    // je done                 (marked before)
  size_t done_1 = w.rel8_placeholder();
  w.bytes({0x31, 0xc0});              // xor eax, eax
  w.bytes({0xf0, 0x0f, 0xb1, 0x34, 0x8a});  // lock cmpxchg [rdx + rcx*4], esi  (claim an empty slot)
  w.bytes({0x74});                    // je done
  size_t done_2 = w.rel8_placeholder();
  w.bytes({0xff, 0xc1});              // inc ecx                 (taken by another thread)
  w.bytes({0x81, 0xe1});              // and ecx, slots - 1
  w.u32(tables.slots - 1);
  w.bytes({0xeb});                    // jmp loop
  w.back_to(loop);
  w.place(done_1);
  w.place(done_2);
  w.bytes({0x5e, 0x5a, 0x59, 0x58});  // pop rsi; pop rdx; pop rcx; pop rax
  w.bytes({0xe9});                    // jmp continue_to
  w.rel32_to(continue_to);
  return w.take();
}

size_t covered_length(std::string_view function, std::span<const uint8_t> code) {
  size_t covered = 0;
  while (covered < kJumpSize) {
    size_t length = instruction_length(code.subspan(covered));
    if (length == 0) fail("{}: could not decode its entry at +{:#x}", function, covered);
    covered += length;
  }
  return covered;
}

std::vector<uint8_t> encode_old_entry(std::string_view function, RemoteAddr at, RemoteAddr site,
                                      std::span<const uint8_t> covered) {
  ZydisDecoder decoder;
  ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  size_t offset = 0;
  while (offset < covered.size()) {
    ZydisDecodedInstruction instruction;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder, nullptr, covered.data() + offset,
                                                    covered.size() - offset, &instruction)))
      fail("{}: could not decode its entry at +{:#x}", function, offset);
    if (instruction.attributes & ZYDIS_ATTRIB_IS_RELATIVE)
      fail("{}: its first instructions depend on where they run (rip-relative or a relative branch at +{:#x}); "
           "--safe-point cannot run its old version out of line",
           function, offset);
    offset += instruction.length;
  }
  Writer w(at);
  for (uint8_t b : covered) w.bytes({b});  // the old instructions, unchanged
  w.bytes({0xe9});                          // jmp site + covered
  w.rel32_to(site + static_cast<int64_t>(covered.size()));
  return w.take();
}

}  // namespace suture::redirect
