// Which caller-saved registers a function really clobbers, and how much of its
// stack-argument area it uses.
//
// The problem. The psABI says a callee may destroy rax rcx rdx rsi rdi r8-r11 and
// every xmm register. gcc -O2 relies on less: with -fipa-ra, when the whole call
// tree of a function is visible in its translation unit, its callers keep values
// in the caller-saved registers it provably leaves alone (a loop counter in rcx
// across a call to a leaf helper). Replace that helper with one that calls
// snprintf and the callers' live values are gone. The redirect must know, for the
// old and the new function, which caller-saved registers each may write; the
// difference is what a preserving thunk (preserving-thunk.cc) has to save.
//
// The approach. We decode the function linearly with Zydis and collect every
// register operand written, explicit and hidden (`rep stos` writes rcx and rdi,
// `cpuid` rax-rdx, `div` rax and rdx), each mapped to its full register (al, ax,
// eax -> rax; xmm/ymm/zmm N -> xmm N). Linear decoding sees every instruction of
// a gcc function, including blocks reached only through a jump table, so the set
// is an over-approximation: exactly what we want, since a register wrongly
// thought clobbered only costs a save in the thunk. Anything we cannot see into
// counts as "all caller-saved": an indirect call or jump, a call or tail jump to a
// function the lookup does not know, an undecodable byte, a syscall (the kernel
// keeps most registers, but we do not model signal delivery or clone), vzeroall
// and the xrstor family (they load every vector register). Direct calls and tail
// jumps to other functions of the binary are analysed recursively through a
// lookup the caller provides, with a depth limit and a cycle check; a call inside
// the function's own bytes (self-recursion) adds nothing, its body is already
// counted.
//
// Stack arguments. The thunk must copy the stack-passed arguments the new
// function reads to where it expects them, so we also measure how far above its
// return address a function reaches. That needs the value of rsp at each
// instruction relative to the entry, which a linear scan gets wrong (after
// `pop rbx; ret` the next block usually starts with rbx still pushed). So this
// part is a small data-flow pass over the decoded instructions: the rsp offset
// (and rbp's, once `mov rbp, rsp` or `lea rbp, [rsp+d]` ties it to rsp) flows along
// fall-through and relative branches, through push/pop, add/sub rsp with an
// immediate, lea rsp and leave. Every rsp- (or known-rbp-) based memory operand
// reaching at or above entry rsp + 8 records its end. The answer is unknown (-1)
// when rsp is changed in a way we do not follow (`and rsp, -32`, `sub rsp, rax`),
// when two paths meet with different offsets, when the address of the area is
// taken (`lea rax, [rsp+8]`, as va_start does), when the function has an
// indirect jump (jump-table blocks are not reached by the flow), or when it tail
// calls a function whose own answer is unknown.
//
// Limits. Index registers in an rsp-based operand are ignored (gcc only indexes
// local arrays so); rsp copied into another register than rbp is assumed to
// address locals. AVX-512 masks, zmm16-31, x87 and MMX registers are outside
// RegisterSet: writes to them only set writes_untracked_state.
//
// Rejected alternatives.
//  - Reading the register usage from DWARF or from gcc's -fipa-ra notes: neither
//    survives into the binary.
//  - Always thunking with every caller-saved register saved: it costs every call
//    of every patched function ~30 instructions and hides the reason from logs.
//  - Recursive-descent decoding from the entry only: it misses jump-table blocks,
//    whose clobbers count as much as any other.

#include "redirect/register-contract.h"

#include <Zydis/Zydis.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace suture::redirect {
namespace {

constexpr int kMaxDepth = 8;

struct Instruction {
  size_t offset = 0;
  ZydisDecodedInstruction insn;
  std::array<ZydisDecodedOperand, ZYDIS_MAX_OPERAND_COUNT> operands;

  std::span<const ZydisDecodedOperand> all() const { return {operands.data(), insn.operand_count}; }
  size_t next() const { return offset + insn.length; }
};

struct Decoded {
  std::vector<Instruction> instructions;
  std::optional<size_t> undecodable_at;
};

Decoded decode_all(std::span<const uint8_t> code) {
  ZydisDecoder decoder;
  [[maybe_unused]] ZyanStatus status = ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
  assert(ZYAN_SUCCESS(status));
  Decoded decoded;
  size_t offset = 0;
  while (offset < code.size()) {
    Instruction instruction;
    instruction.offset = offset;
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, code.data() + offset, code.size() - offset, &instruction.insn,
                                             instruction.operands.data()))) {
      decoded.undecodable_at = offset;
      break;
    }
    offset += instruction.insn.length;
    decoded.instructions.push_back(instruction);
  }
  return decoded;
}

// The RegisterSet bit of `r` (any width), 0 for registers outside the set.
// Sets *untracked for registers a caller could keep live that we do not model.
RegisterSet register_bit(ZydisRegister r, bool* untracked) {
  if (r == ZYDIS_REGISTER_NONE) return 0;
  ZydisRegister full = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
  int id = ZydisRegisterGetId(full);
  switch (ZydisRegisterGetClass(full)) {
    case ZYDIS_REGCLASS_GPR64:
      return id >= 0 && id < 16 ? gpr_bit(id) : 0;
    case ZYDIS_REGCLASS_XMM:
    case ZYDIS_REGCLASS_YMM:
    case ZYDIS_REGCLASS_ZMM:
      if (id >= 0 && id < 16) return xmm_bit(id);
      *untracked = true;
      return 0;
    case ZYDIS_REGCLASS_MASK:
    case ZYDIS_REGCLASS_X87:
    case ZYDIS_REGCLASS_MMX:
    case ZYDIS_REGCLASS_TMM:
      *untracked = true;
      return 0;
    default:
      return 0;  // flags, rip, segment, control registers
  }
}

bool writes(const ZydisDecodedOperand& op) { return (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0; }

bool is_register(const ZydisDecodedOperand& op, ZydisRegister r) {
  return op.type == ZYDIS_OPERAND_TYPE_REGISTER && op.reg.value == r;
}

bool is_branch(const Instruction& i) {
  auto category = i.insn.meta.category;
  return category == ZYDIS_CATEGORY_CALL || category == ZYDIS_CATEGORY_COND_BR ||
         category == ZYDIS_CATEGORY_UNCOND_BR;
}

bool is_call(const Instruction& i) { return i.insn.meta.category == ZYDIS_CATEGORY_CALL; }

bool ends_flow(const Instruction& i) {
  switch (i.insn.mnemonic) {
    case ZYDIS_MNEMONIC_RET:
    case ZYDIS_MNEMONIC_JMP:
    case ZYDIS_MNEMONIC_UD2:
    case ZYDIS_MNEMONIC_HLT:
    case ZYDIS_MNEMONIC_INT3:
      return true;
    default:
      return false;
  }
}

// Instructions that write vector registers Zydis does not list as operands.
bool writes_all_vectors(const Instruction& i) {
  switch (i.insn.mnemonic) {
    case ZYDIS_MNEMONIC_VZEROALL:
    case ZYDIS_MNEMONIC_FXRSTOR:
    case ZYDIS_MNEMONIC_FXRSTOR64:
    case ZYDIS_MNEMONIC_XRSTOR:
    case ZYDIS_MNEMONIC_XRSTOR64:
    case ZYDIS_MNEMONIC_XRSTORS:
    case ZYDIS_MNEMONIC_XRSTORS64:
      return true;
    default:
      return false;
  }
}

bool enters_kernel(const Instruction& i) {
  switch (i.insn.mnemonic) {
    case ZYDIS_MNEMONIC_SYSCALL:
    case ZYDIS_MNEMONIC_SYSENTER:
    case ZYDIS_MNEMONIC_INT:
      return true;
    default:
      return false;
  }
}

// Where a branch goes, as far as this function can tell.
struct Target {
  enum Kind { kInside, kOutside, kUnknown } kind;
  size_t offset = 0;    // kInside: offset in the function
  RemoteAddr address;   // kOutside: linked address
};

// How the analysis sees branch displacements: linked code, or a patch object's
// code whose relocated rel32 fields are placeholders.
struct Mode {
  RemoteAddr function;
  bool unlinked = false;
  std::optional<std::set<uint64_t>> relocated_fields;  // unlinked: nullopt = every e8/e9 goes out
};

Target branch_target(const Mode& mode, const Instruction& i, size_t size) {
  const auto& imm = i.insn.raw.imm[0];
  if (!is_branch(i) || !imm.is_relative) return {Target::kUnknown};  // indirect
  if (mode.unlinked) {
    bool relocated = mode.relocated_fields
                         ? mode.relocated_fields->contains(i.offset + imm.offset)
                         : imm.size == 32 && (i.insn.mnemonic == ZYDIS_MNEMONIC_CALL ||
                                              i.insn.mnemonic == ZYDIS_MNEMONIC_JMP);
    if (relocated) return {Target::kUnknown};
  }
  int64_t to = static_cast<int64_t>(i.next()) + imm.value.s;
  if (to >= 0 && static_cast<uint64_t>(to) < size) return {Target::kInside, static_cast<size_t>(to)};
  if (mode.unlinked) return {Target::kUnknown};
  return {Target::kOutside, 0, mode.function + to};
}

// Data-flow state of the stack pass at one instruction.
struct StackState {
  bool reached = false;
  bool lost = false;          // rsp no longer known relative to the entry
  int64_t rsp = 0;            // rsp - entry rsp
  std::optional<int64_t> rbp; // rbp - entry rsp, when rbp holds a stack address we follow
};

class Analyzer {
 public:
  explicit Analyzer(const CalleeLookup& callee) : callee_(callee) {}

  Clobbers analyze(const Mode& mode, std::span<const uint8_t> code, int depth);

 private:
  Clobbers analyze_callee(RemoteAddr target, int depth);
  int64_t stack_argument_bytes(const Mode& mode, const Decoded& decoded, size_t size, int depth);

  const CalleeLookup& callee_;
  std::map<RemoteAddr, Clobbers> done_;
  std::set<RemoteAddr> in_progress_;
};

void give_up(Clobbers& c, std::string why) {
  c.registers = kCallerSaved;
  if (c.complete) c.why_incomplete = std::move(why);
  c.complete = false;
}

Clobbers Analyzer::analyze_callee(RemoteAddr target, int depth) {
  Clobbers result;
  result.stack_argument_bytes = -1;
  if (auto it = done_.find(target); it != done_.end()) return it->second;
  if (in_progress_.contains(target)) {
    give_up(result, fmt::format("call cycle through {}", target));
    return result;
  }
  if (depth > kMaxDepth) {
    give_up(result, fmt::format("calls nested deeper than {} at {}", kMaxDepth, target));
    return result;
  }
  auto found = callee_ ? callee_(target) : std::nullopt;
  if (!found || found->first != target) {
    give_up(result, fmt::format("unknown function at {}", target));
    return result;
  }
  in_progress_.insert(target);
  result = analyze(Mode{.function = target}, found->second, depth);
  in_progress_.erase(target);
  done_[target] = result;
  return result;
}

Clobbers Analyzer::analyze(const Mode& mode, std::span<const uint8_t> code, int depth) {
  Clobbers result;
  Decoded decoded = decode_all(code);
  for (const Instruction& i : decoded.instructions) {
    for (const ZydisDecodedOperand& op : i.all()) {
      if (op.type == ZYDIS_OPERAND_TYPE_REGISTER && writes(op)) {
        result.registers |= register_bit(op.reg.value, &result.writes_untracked_state);
      }
    }
    if (writes_all_vectors(i)) result.registers |= kAllXmms;
    if (enters_kernel(i)) give_up(result, fmt::format("enters the kernel at +{:#x}", i.offset));
    if (!is_branch(i)) continue;
    Target target = branch_target(mode, i, code.size());
    switch (target.kind) {
      case Target::kInside:
        break;
      case Target::kUnknown:
        give_up(result, fmt::format("{} at +{:#x} to an unknown target", is_call(i) ? "call" : "jump", i.offset));
        break;
      case Target::kOutside: {
        Clobbers callee = analyze_callee(target.address, depth + 1);
        result.registers |= callee.registers;
        result.writes_untracked_state |= callee.writes_untracked_state;
        if (!callee.complete) {
          give_up(result, fmt::format("{} at +{:#x} to {}: {}", is_call(i) ? "call" : "jump", i.offset,
                                      target.address, callee.why_incomplete));
        }
        break;
      }
    }
  }
  if (decoded.undecodable_at) give_up(result, fmt::format("could not decode at +{:#x}", *decoded.undecodable_at));
  result.registers &= kCallerSaved;
  result.stack_argument_bytes = stack_argument_bytes(mode, decoded, code.size(), depth);
  return result;
}

int64_t Analyzer::stack_argument_bytes(const Mode& mode, const Decoded& decoded, size_t size, int depth) {
  // Without the whole function, a block we did not decode may read the area.
  if (decoded.undecodable_at) return -1;
  const std::vector<Instruction>& code = decoded.instructions;
  std::map<size_t, size_t> index_at;
  for (size_t k = 0; k < code.size(); ++k) index_at[code[k].offset] = k;

  std::vector<StackState> states(code.size());
  std::vector<size_t> work;
  bool unknown = false;
  int64_t end = 8;  // highest entry-relative byte offset used, exclusive; 8 = just the return address

  auto flow_to = [&](size_t offset, const StackState& s) {
    auto it = index_at.find(offset);
    if (it == index_at.end()) {
      if (offset < size) unknown = true;  // into the middle of an instruction; past the end is just the end
      return;
    }
    StackState& t = states[it->second];
    StackState before = t;
    if (!t.reached) {
      t = s;
      t.reached = true;
    } else if (!t.lost) {
      if (s.lost || s.rsp != t.rsp) t.lost = true;
      if (s.rbp != t.rbp) t.rbp.reset();
    }
    if (t.reached != before.reached || t.lost != before.lost || t.rbp != before.rbp) work.push_back(it->second);
  };

  if (!code.empty()) flow_to(0, StackState{});
  while (!work.empty() && !unknown) {
    size_t k = work.back();
    work.pop_back();
    const Instruction& i = code[k];
    const auto& ops = i.operands;
    StackState s = states[k];

    // Memory it touches in the stack-argument area.
    for (const ZydisDecodedOperand& op : i.all()) {
      if (op.type != ZYDIS_OPERAND_TYPE_MEMORY || op.visibility == ZYDIS_OPERAND_VISIBILITY_HIDDEN) continue;
      std::optional<int64_t> base;
      if (op.mem.base == ZYDIS_REGISTER_RSP) {
        if (s.lost) unknown = true;
        base = s.rsp;
      } else if (op.mem.base == ZYDIS_REGISTER_RBP && !s.lost) {
        base = s.rbp;
      }
      if (!base || s.lost) continue;
      int64_t at = *base + op.mem.disp.value;
      if (op.mem.type == ZYDIS_MEMOP_TYPE_AGEN) {
        // lea: the address escapes; fine for locals, not for the argument area.
        bool moves_frame = is_register(ops[0], ZYDIS_REGISTER_RSP) || is_register(ops[0], ZYDIS_REGISTER_RBP);
        if (!moves_frame && at >= 8) unknown = true;
        continue;
      }
      int64_t bytes = std::max<int64_t>(op.size / 8, 1);
      if (at + bytes > 8) end = std::max(end, at + bytes);
    }

    // The new state after it.
    StackState n = s;
    bool handled_rsp = true;
    bool handled_rbp = false;
    int64_t width = i.insn.operand_width / 8;
    switch (i.insn.mnemonic) {
      case ZYDIS_MNEMONIC_PUSH:
      case ZYDIS_MNEMONIC_PUSHFQ:
        n.rsp -= width;
        break;
      case ZYDIS_MNEMONIC_POP:
      case ZYDIS_MNEMONIC_POPFQ:
        n.rsp += width;
        if (is_register(ops[0], ZYDIS_REGISTER_RSP)) n.lost = true;
        break;
      case ZYDIS_MNEMONIC_ADD:
      case ZYDIS_MNEMONIC_SUB:
        if (is_register(ops[0], ZYDIS_REGISTER_RSP)) {
          if (ops[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
            n.rsp += i.insn.mnemonic == ZYDIS_MNEMONIC_ADD ? ops[1].imm.value.s : -ops[1].imm.value.s;
          } else {
            n.lost = true;
          }
        }
        break;
      case ZYDIS_MNEMONIC_LEA: {
        std::optional<int64_t> address;
        if (ops[1].mem.index == ZYDIS_REGISTER_NONE) {
          if (ops[1].mem.base == ZYDIS_REGISTER_RSP) address = s.rsp + ops[1].mem.disp.value;
          if (ops[1].mem.base == ZYDIS_REGISTER_RBP && s.rbp) address = *s.rbp + ops[1].mem.disp.value;
        }
        if (is_register(ops[0], ZYDIS_REGISTER_RSP)) {
          if (address) n.rsp = *address; else n.lost = true;
        } else if (is_register(ops[0], ZYDIS_REGISTER_RBP)) {
          n.rbp = address;
          handled_rbp = true;
        }
        break;
      }
      case ZYDIS_MNEMONIC_MOV:
        if (is_register(ops[0], ZYDIS_REGISTER_RBP) && is_register(ops[1], ZYDIS_REGISTER_RSP)) {
          n.rbp = s.rsp;
          handled_rbp = true;
        } else if (is_register(ops[0], ZYDIS_REGISTER_RSP)) {
          if (is_register(ops[1], ZYDIS_REGISTER_RBP) && s.rbp) n.rsp = *s.rbp; else n.lost = true;
        }
        break;
      case ZYDIS_MNEMONIC_LEAVE:
        if (s.rbp) n.rsp = *s.rbp + 8; else n.lost = true;
        n.rbp.reset();
        handled_rbp = true;
        break;
      case ZYDIS_MNEMONIC_CALL:
      case ZYDIS_MNEMONIC_RET:
        break;  // the callee pops what the call pushed
      default:
        handled_rsp = false;
        break;
    }
    for (const ZydisDecodedOperand& op : i.all()) {
      if (op.type != ZYDIS_OPERAND_TYPE_REGISTER || !writes(op)) continue;
      bool untracked = false;
      RegisterSet bit = register_bit(op.reg.value, &untracked);
      if (bit == gpr_bit(reg::kRsp) && !handled_rsp) n.lost = true;
      if (bit == gpr_bit(reg::kRbp) && !handled_rbp) n.rbp.reset();
    }
    if (n.lost) n.rbp.reset();

    // Where control goes next.
    if (is_branch(i) && !is_call(i)) {
      Target target = branch_target(mode, i, size);
      if (target.kind == Target::kInside) {
        flow_to(target.offset, n);
      } else if (target.kind == Target::kOutside && !n.lost && n.rsp == 0) {
        // A tail call: the callee reads our caller's stack arguments as its own.
        int64_t callee = analyze_callee(target.address, depth + 1).stack_argument_bytes;
        if (callee < 0) unknown = true; else end = std::max(end, callee + 8);
      } else {
        unknown = true;
      }
    }
    if (!ends_flow(i)) flow_to(i.next(), n);
  }
  return unknown ? -1 : end - 8;
}

}  // namespace

std::string describe_registers(RegisterSet registers) {
  static constexpr std::array<std::pair<int, const char*>, 16> kGprOrder = {{
      {reg::kRax, "rax"}, {reg::kRdi, "rdi"}, {reg::kRsi, "rsi"}, {reg::kRdx, "rdx"},
      {reg::kRcx, "rcx"}, {reg::kR8, "r8"},   {reg::kR9, "r9"},   {reg::kR10, "r10"},
      {reg::kR11, "r11"}, {reg::kRbx, "rbx"}, {reg::kRbp, "rbp"}, {reg::kR12, "r12"},
      {reg::kR13, "r13"}, {reg::kR14, "r14"}, {reg::kR15, "r15"}, {reg::kRsp, "rsp"},
  }};
  std::string text;
  auto add = [&](std::string_view name) {
    if (!text.empty()) text += ", ";
    text += name;
  };
  for (const auto& [number, name] : kGprOrder) {
    if (registers & gpr_bit(number)) add(name);
  }
  for (int n = 0; n < 16; ++n) {
    if (registers & xmm_bit(n)) add(fmt::format("xmm{}", n));
  }
  return text.empty() ? "none" : text;
}

Clobbers analyze_clobbers(RemoteAddr function, std::span<const uint8_t> code, const CalleeLookup& callee) {
  Analyzer analyzer(callee);
  return analyzer.analyze(Mode{.function = function}, code, 0);
}

Clobbers analyze_unlinked_clobbers(std::span<const uint8_t> code, std::span<const uint64_t> relocated_fields) {
  CalleeLookup none;
  Analyzer analyzer(none);
  Mode mode{.unlinked = true, .relocated_fields = std::set<uint64_t>(relocated_fields.begin(), relocated_fields.end())};
  return analyzer.analyze(mode, code, 0);
}

Clobbers analyze_unlinked_clobbers(std::span<const uint8_t> code) {
  CalleeLookup none;
  Analyzer analyzer(none);
  return analyzer.analyze(Mode{.unlinked = true}, code, 0);
}

}  // namespace suture::redirect
