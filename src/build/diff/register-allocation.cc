// Callers that differ only by interprocedural register allocation.
//
// The problem. gcc -O2 compiles a caller knowing which registers each callee
// of its unit really writes (-fipa-ra): a value may stay in a caller-saved
// register across a call that provably leaves it alone. A fix that makes the
// callee write more registers therefore changes the machine code of callers
// whose source did not change. The object differ rightly reports them
// (replacing only the callee would break them), but a caller replaced this
// way may be one that never returns -- `main`, an event loop, a thread's body
// -- and a stop-the-world apply must refuse any patch that replaces a
// function some thread is inside, forever.
//
// The approach. There is another way to keep such a caller correct: leave the
// running copy in place and make the new callee honour the old callee's
// register use. pack already does that half: it reads from machine code which
// caller-saved registers the old function never writes and the new one may,
// and the redirect reaches the new function through a thunk that saves and
// restores exactly those (redirect/register-contract.h). What remains is to
// prove that a caller's difference is nothing but that register allocation.
// We compile the translation unit again, before and after the fix, with
// -fno-ipa-ra added to the very same compile line, and compare that pair the
// same way. -fno-ipa-ra switches off one thing: the use of a callee's real
// register use at its call sites; every call then clobbers what the psABI
// says. Every other conclusion gcc draws about a callee -- inlining,
// pure/const, modref, IPA-CP and IPA-SRA clones, noreturn, the stack
// alignment it needs (-fipa-stack-alignment) -- is drawn as before and shows
// up in that pair too. So a function whose code differs in the project's pair
// and is identical, relocations and all, in the -fno-ipa-ra pair was compiled
// to the same code against the old and the new conclusions except for which
// registers survive calls. Its running copy is correct with the new callees
// as long as every call it makes still clobbers no more than the old callee
// did, which is what the thunk guarantees.
//
// The conditions, each for a reason:
//  1. Identical in the -fno-ipa-ra pair, paired under the same names. Its own
//     source changed, or a conclusion other than register use changed for it:
//     it differs there too and is replaced as before.
//  2. The running copy reaches, through its calls and through functions the
//     running program keeps (unchanged or kept), at least one function that is
//     replaced: those are the callees whose register use it relied on, and the
//     ones whose thunk must cover it. A caller whose difference no changed
//     callee explains is not what this proof is about; it is replaced.
//  3. Nothing the patch brings reaches it. The patch's own code was compiled
//     against the new copy's register use, not the kept copy's, and the kept
//     copy may write registers the new one does not.
//  4. (checked by the build driver once the binary is known, since pack reads
//     it from the running code) every callee named in 2 has an old register
//     use that could be read completely: otherwise pack assumes the old one
//     writes every caller-saved register, preserves nothing, and the
//     reliance would go unchecked. The driver then replaces the caller.
// Dropping a candidate can make another one fail 2 or 3, so the conditions are
// applied until nothing changes.
//
// Rejected alternatives. Recognising a register-renaming difference in the
// two compiled copies (the same instructions with registers permuted, a move
// before or after a call) is a heuristic: register allocation also reorders,
// spills and rematerialises, and nothing tells whether the rest of the
// difference was harmless. Compiling the whole build with -fno-ipa-ra would
// change the code that runs. Compiling only the callee with a stricter
// contract cannot be done in gcc without changing every caller's view of it.
#include "build/diff/register-allocation.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <map>

namespace suture::build::diff {
namespace {

const std::set<std::string> kNone;

const std::set<std::string>& edges(const std::map<std::string, std::set<std::string>>& graph, const std::string& at) {
  auto found = graph.find(at);
  return found == graph.end() ? kNone : found->second;
}

std::string original_of(const Change& change) { return change.original.empty() ? change.symbol : change.original; }

// The functions of `replaced` that running code reaches from `from` with no
// replaced function in between (original names).
std::set<std::string> replaced_callees(const ObjectDiff& diff, const std::string& from,
                                       const std::set<std::string>& replaced) {
  std::set<std::string> found, seen{from};
  std::deque<std::string> queue{from};
  while (!queue.empty()) {
    std::string at = queue.front();
    queue.pop_front();
    for (const std::string& next : edges(diff.references, at)) {
      if (replaced.count(next)) found.insert(next);
      else if (seen.insert(next).second) queue.push_back(next);
    }
  }
  return found;
}

// Whether running code reaches, from `from`, a function of `kept` other than
// itself (never through a replaced one: `from` reaches none).
bool reaches_other(const ObjectDiff& diff, const std::string& from, const std::set<std::string>& kept) {
  std::set<std::string> seen{from};
  std::deque<std::string> queue{from};
  while (!queue.empty()) {
    std::string at = queue.front();
    queue.pop_front();
    for (const std::string& next : edges(diff.references, at)) {
      if (next != from && kept.count(next)) return true;
      if (seen.insert(next).second) queue.push_back(next);
    }
  }
  return false;
}

// The kept functions that code of the patch can reach: the patch's functions
// by their references in the patched object, the running program's functions
// (unchanged and kept) by theirs in the original.
std::set<std::string> reached_from_patch(const ObjectDiff& diff, const std::set<std::string>& kept,
                                         const std::set<std::string>& replaced) {
  std::map<std::string, std::string> patched_of;  // original name -> patched name
  for (const auto& [patched, original] : diff.original_name) patched_of.emplace(original, patched);
  std::set<std::string> patch;  // the patch's functions, by patched names
  for (const Change& c : diff.changes) {
    if (c.kind == Change::new_function || (c.kind == Change::changed_function && replaced.count(original_of(c))))
      patch.insert(c.symbol);
  }
  std::set<std::string> reached, seen_patch(patch.begin(), patch.end()), seen_running;
  std::deque<std::string> in_patch(patch.begin(), patch.end()), running;
  auto visit_running = [&](const std::string& name) {
    if (seen_running.insert(name).second) running.push_back(name);
  };
  auto visit_patch = [&](const std::string& name) {
    if (seen_patch.insert(name).second) in_patch.push_back(name);
  };
  while (!in_patch.empty() || !running.empty()) {
    if (!in_patch.empty()) {
      std::string at = in_patch.front();
      in_patch.pop_front();
      for (const std::string& next : edges(diff.patched_references, at)) {
        if (patch.count(next)) visit_patch(next);
        else if (auto o = diff.original_name.find(next); o != diff.original_name.end()) visit_running(o->second);
      }
      continue;
    }
    std::string at = running.front();
    running.pop_front();
    if (kept.count(at)) reached.insert(at);
    for (const std::string& next : edges(diff.references, at)) {
      auto p = patched_of.find(next);
      if (replaced.count(next) && p != patched_of.end()) visit_patch(p->second);
      else visit_running(next);
    }
  }
  return reached;
}

}  // namespace

bool calls_changed_functions(const ObjectDiff& diff) {
  std::set<std::string> changed;
  for (const Change& c : diff.changes)
    if (c.kind == Change::changed_function) changed.insert(original_of(c));
  for (const std::string& name : changed) {
    std::set<std::string> others = changed;
    others.erase(name);
    if (!replaced_callees(diff, name, others).empty()) return true;
  }
  return false;
}

std::vector<KeptCaller> keep_register_allocation_only(ObjectDiff& with_ipa_ra, const ObjectDiff& without_ipa_ra,
                                                      const std::set<std::string>& must_replace) {
  if (!without_ipa_ra.errors.empty()) return {};
  std::set<std::string> differs_without;  // patched names
  for (const Change& c : without_ipa_ra.changes) differs_without.insert(c.symbol);
  for (const Change& c : without_ipa_ra.forgiven) differs_without.insert(c.symbol);

  // 1. the candidates
  std::set<std::string> changed, kept;
  for (const Change& c : with_ipa_ra.changes) {
    if (c.kind != Change::changed_function) continue;
    changed.insert(original_of(c));
    auto pairing = without_ipa_ra.original_name.find(c.symbol);
    bool same_pair = pairing != without_ipa_ra.original_name.end() && pairing->second == original_of(c);
    if (same_pair && !differs_without.count(c.symbol) && !must_replace.count(original_of(c)))
      kept.insert(original_of(c));
  }

  // 2. and 3., until nothing changes
  std::map<std::string, std::set<std::string>> callees;
  for (bool dropped = true; dropped && !kept.empty();) {
    dropped = false;
    std::set<std::string> replaced;
    std::set_difference(changed.begin(), changed.end(), kept.begin(), kept.end(),
                        std::inserter(replaced, replaced.end()));
    callees.clear();
    std::vector<std::string> unexplained;
    for (const std::string& name : kept) {
      auto relied_on = replaced_callees(with_ipa_ra, name, replaced);
      if (relied_on.empty()) unexplained.push_back(name);
      else callees[name] = std::move(relied_on);
    }
    if (!unexplained.empty()) {
      // Those that reach no other candidate first: a candidate above them may
      // be explained by them once they are replaced.
      std::vector<std::string> lowest;
      for (const std::string& name : unexplained)
        if (!reaches_other(with_ipa_ra, name, kept)) lowest.push_back(name);
      for (const std::string& name : lowest.empty() ? unexplained : lowest) kept.erase(name);
      dropped = true;
      continue;
    }
    for (const std::string& name : reached_from_patch(with_ipa_ra, kept, replaced)) {
      kept.erase(name);
      dropped = true;
    }
  }

  std::vector<KeptCaller> out;
  auto& changes = with_ipa_ra.changes;
  for (auto it = changes.begin(); it != changes.end();) {
    if (it->kind == Change::changed_function && kept.count(original_of(*it))) {
      const auto& relied_on = callees.at(original_of(*it));
      out.push_back({*it, std::vector<std::string>(relied_on.begin(), relied_on.end())});
      it = changes.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

}  // namespace suture::build::diff
