// Planning the jump that redirects an old function to its replacement.
//
// The problem. To send every future call of `f` to the new code we overwrite the
// start of `f` with `jmp rel32` (e9 + 4 bytes). Five bytes of the old function are
// destroyed. That is harmless for a thread entering at the top: it executes the
// jump and never sees what follows. It is fatal for a thread that arrives at one
// of the four bytes after the first: it would execute the tail of our jump as if
// it were an instruction. Such a thread can come from three places:
//   1. a branch inside `f` whose target is one of those bytes (a loop whose head
//      is the second instruction of the function, as gcc emits when the prologue
//      is short and the loop starts right away);
//   2. a thread already stopped inside those bytes, or a return address there;
//   3. a branch from elsewhere (an indirect jump, a `.cold` fragment of `f`).
// Case 2 belongs to the consistency stage, which keeps every thread out of the
// whole old function before we write. Case 3 we cannot see from the bytes of `f`
// alone; gcc's jump tables and cold fragments go back to code after the prologue,
// never into its first five bytes. Case 1 is what this file checks.
//
// The approach. With Zydis we decode the instructions from the jump site until
// they cover five bytes, which tells us the function is long enough and the site
// is real code. Then we decode the whole function linearly from its entry and
// collect every target of a relative branch (jcc, jmp, call, loop, jrcxz, xbegin):
// one landing strictly inside (site, site + 5) refuses the plan. A target equal to
// the site is fine; it executes our jump, as a call of the function would.
//
// CET. A function built with -fcf-protection starts with endbr64, the only
// instruction an indirect call may land on. We keep it and put the jump after it,
// so calls through function pointers still find their landing pad.
//
// Rejected alternatives.
//  - A trampoline that relocates the displaced instructions so the old function
//    stays callable: we never run the old code again (revert writes the original
//    bytes back), so there is nothing to relocate, and RIP-relative operands in
//    the covered bytes need no fixing.
//  - Resynchronising after undecodable bytes: the guess about where the next
//    instruction starts may be wrong, and a branch missed behind it would be the
//    very thing we are looking for. We refuse instead, naming the offset.
//  - A 2-byte `jmp rel8` into padding for very short functions: it needs a free
//    hole within 127 bytes, which we do not own.
//
// Stacked patches. When the function has already been redirected, the site holds
// a jump of ours. We replace it with the new one, and `original` is that jump, so
// reverting the newer patch restores the older one. The bytes after it may be the
// tails of the instructions the first jump cut, which no longer decode as the
// function did; scanning them would refuse for nothing. The branch check was
// made when that first jump was planned, on the same five bytes, so we skip it.
// (A compiler-emitted `jmp rel32` at the site is just as safe: no branch of sound
// code lands inside an instruction it emitted.)

#include "redirect/entry-jump.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <cassert>
#include <limits>
#include <optional>

#include "common/error.h"

namespace suture::redirect {
namespace {

constexpr std::array<uint8_t, 4> kEndbr64 = {0xf3, 0x0f, 0x1e, 0xfa};
constexpr uint8_t kJmpRel32 = 0xe9;

ZydisDecoder make_decoder() {
  ZydisDecoder decoder;
  // Fails only for invalid arguments, which these are not.
  [[maybe_unused]] ZyanStatus status =
      ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  assert(ZYAN_SUCCESS(status));
  return decoder;
}

std::optional<ZydisDecodedInstruction> decode(const ZydisDecoder& decoder, std::span<const uint8_t> code) {
  ZydisDecodedInstruction instruction;
  if (code.empty() || !ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder, nullptr, code.data(), code.size(),
                                                                   &instruction))) {
    return std::nullopt;
  }
  return instruction;
}

// The displacement of a jmp rel32 ending at `next` and landing on `to`, if it fits.
std::optional<int32_t> rel32(RemoteAddr next, RemoteAddr to) {
  int64_t distance = to - next;
  if (distance < std::numeric_limits<int32_t>::min() || distance > std::numeric_limits<int32_t>::max()) {
    return std::nullopt;
  }
  return static_cast<int32_t>(distance);
}

std::array<uint8_t, 5> jmp_bytes(int32_t displacement) {
  auto d = static_cast<uint32_t>(displacement);
  return {kJmpRel32,  // jmp rel32
          static_cast<uint8_t>(d), static_cast<uint8_t>(d >> 8), static_cast<uint8_t>(d >> 16),
          static_cast<uint8_t>(d >> 24)};
}

}  // namespace

std::array<uint8_t, 5> encode_jmp_rel32(RemoteAddr from, RemoteAddr to) {
  std::optional<int32_t> displacement = rel32(from + kJumpSize, to);
  if (!displacement) fail("a jmp rel32 at {} cannot reach {}", from, to);
  return jmp_bytes(*displacement);
}

bool starts_with_endbr64(std::span<const uint8_t> code) {
  return code.size() >= kEndbr64.size() && std::equal(kEndbr64.begin(), kEndbr64.end(), code.begin());
}

size_t instruction_length(std::span<const uint8_t> code) {
  ZydisDecoder decoder = make_decoder();
  std::optional<ZydisDecodedInstruction> instruction = decode(decoder, code);
  return instruction ? instruction->length : 0;
}

BranchScan scan_branches(RemoteAddr function, std::span<const uint8_t> code) {
  ZydisDecoder decoder = make_decoder();
  BranchScan scan;
  size_t offset = 0;
  while (offset < code.size()) {
    std::optional<ZydisDecodedInstruction> instruction = decode(decoder, code.subspan(offset));
    if (!instruction) {
      scan.undecodable_at = offset;
      break;
    }
    RemoteAddr at = function + static_cast<int64_t>(offset);
    RemoteAddr next = at + instruction->length;
    for (const auto& imm : instruction->raw.imm) {
      // Zydis sign-extends relative immediates into value.s, whatever their size.
      if (imm.is_relative) scan.branches.push_back({at, next + imm.value.s});
    }
    offset += instruction->length;
  }
  return scan;
}

std::vector<RemoteAddr> branch_targets(RemoteAddr function, std::span<const uint8_t> code) {
  std::vector<RemoteAddr> targets;
  for (const Branch& branch : scan_branches(function, code).branches) targets.push_back(branch.to);
  return targets;
}

EntryJump plan_entry_jump(std::string_view name, RemoteAddr function, std::span<const uint8_t> code,
                          RemoteAddr destination) {
  bool endbr64 = starts_with_endbr64(code);
  size_t site_offset = endbr64 ? kEndbr64.size() : 0;
  if (code.size() < site_offset + kJumpSize) {
    fail("{}: too short to redirect ({} bytes; a jump needs {}{})", name, code.size(), kJumpSize,
         endbr64 ? " after the endbr64" : "");
  }
  RemoteAddr site = function + static_cast<int64_t>(site_offset);

  // The overwritten bytes must be whole instructions of the function; the last one
  // may run past them (its tail stays, unreachable once the jump is in).
  ZydisDecoder decoder = make_decoder();
  size_t covered = site_offset;
  while (covered < site_offset + kJumpSize) {
    std::optional<ZydisDecodedInstruction> instruction = decode(decoder, code.subspan(covered));
    if (!instruction) {
      fail("{}: could not decode at +{:#x}; the bytes the jump would overwrite must be whole instructions", name,
           covered);
    }
    covered += instruction->length;
  }

  std::span<const uint8_t> overwritten = code.subspan(site_offset, kJumpSize);
  bool already_redirected = overwritten[0] == kJmpRel32;
  if (!already_redirected) {
    BranchScan scan = scan_branches(function, code);
    if (scan.undecodable_at) {
      fail("{}: could not decode at +{:#x}; cannot check that no branch lands inside the bytes the jump would "
           "overwrite",
           name, *scan.undecodable_at);
    }
    for (const Branch& branch : scan.branches) {
      if (branch.to > site && branch.to < site + kJumpSize) {
        fail("{}: a branch at +{:#x} lands inside the bytes the jump would overwrite (at +{:#x})", name,
             branch.from - function, branch.to - function);
      }
    }
  }

  std::optional<int32_t> displacement = rel32(site + kJumpSize, destination);
  if (!displacement) {
    fail("{}: new code at {} is out of reach of a 32-bit jump from {}", name, destination, site);
  }
  std::array<uint8_t, 5> jump = jmp_bytes(*displacement);

  return EntryJump{
      .function = function,
      .site = site,
      .destination = destination,
      .original = {overwritten.begin(), overwritten.end()},
      .jump = {jump.begin(), jump.end()},
  };
}

}  // namespace suture::redirect
