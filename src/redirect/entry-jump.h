// Redirecting a function: a 5-byte `jmp rel32` written at its entry, after an
// `endbr64` landing pad if it has one (so indirect calls still land on a valid
// target under CET). Decoding with Zydis checks that the bytes the jump covers
// are whole instructions of the function and that no branch inside the function
// lands within them (a thread following such a branch would execute half a jump).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/remote-addr.h"

namespace suture::redirect {

inline constexpr size_t kJumpSize = 5;

struct EntryJump {
  RemoteAddr function;           // the old function's entry
  RemoteAddr site;               // where the jump goes: entry, or entry + 4 after endbr64
  RemoteAddr destination;        // the new function
  std::vector<uint8_t> original; // the bytes the jump replaces (kJumpSize bytes)
  std::vector<uint8_t> jump;     // the jump's bytes
  RemoteRange overwritten() const { return {site, jump.size()}; }
};

// Plans the redirect of `function` (whose code is `code`, st_size bytes read from
// the target) to `destination`. Throws Error("NAME: ...") if the function is too
// short for the jump, if the covered bytes do not decode, if a branch of the
// function targets the covered bytes, or if the destination is out of rel32 reach.
EntryJump plan_entry_jump(std::string_view name, RemoteAddr function, std::span<const uint8_t> code,
                          RemoteAddr destination);

// jmp rel32 from `from` (address of the jmp) to `to`. Throws Error if out of range.
std::array<uint8_t, 5> encode_jmp_rel32(RemoteAddr from, RemoteAddr to);

// True if `code` starts with endbr64 (f3 0f 1e fa).
bool starts_with_endbr64(std::span<const uint8_t> code);

// Length of the instruction at the start of `code`, 0 if it does not decode.
size_t instruction_length(std::span<const uint8_t> code);

// A relative branch (jcc, jmp, call, loop, jrcxz, xbegin) found in a function.
struct Branch {
  RemoteAddr from;  // the branch instruction
  RemoteAddr to;    // its target, which may lie outside the function
};

struct BranchScan {
  std::vector<Branch> branches;
  // Offset of the first byte that did not decode; the scan stops there, so
  // branches after it are unknown.
  std::optional<size_t> undecodable_at;
};

// Decodes `code` (the function at `function`) linearly from its first byte and
// collects its relative branches. Indirect branches are not seen.
BranchScan scan_branches(RemoteAddr function, std::span<const uint8_t> code);

// The targets of scan_branches(), up to the first undecodable byte.
std::vector<RemoteAddr> branch_targets(RemoteAddr function, std::span<const uint8_t> code);

}  // namespace suture::redirect
