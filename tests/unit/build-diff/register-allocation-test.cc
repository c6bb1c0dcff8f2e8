// Which callers the running program keeps because they differ only by gcc's
// interprocedural register allocation, against objects this machine's compiler
// built from one fixture with and without -fno-ipa-ra (see fixtures/).
#include "build/diff/register-allocation.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace suture::build::diff {
namespace {

elf::ElfFile object(const std::string& fixture, const char* build) {
  return elf::ElfFile::open(fmt::format("{}/{}.{}.o", FIXTURE_OBJECTS, fixture, build));
}

ObjectDiff diff_pair(const std::string& fixture, const char* before, const char* after) {
  return diff_objects(object(fixture, before), object(fixture, after));
}

using Lines = std::vector<std::string>;

// "direct: weigh", one per kept caller, sorted.
Lines kept_summary(const std::vector<KeptCaller>& kept) {
  Lines lines;
  for (const auto& k : kept) {
    std::string callees;
    for (const auto& c : k.callees) callees += (callees.empty() ? "" : ", ") + c;
    lines.push_back(fmt::format("{}: {}", k.change.symbol, callees));
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

Lines changed(const ObjectDiff& diff) {
  Lines lines;
  for (const Change& c : diff.changes) lines.push_back(fmt::format("{} {}", kind_name(c.kind), c.symbol));
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::string transcript(const ObjectDiff& diff) {
  std::string out;
  for (const Change& c : diff.changes) out += fmt::format("{} {}: {}\n", kind_name(c.kind), c.symbol, c.reason);
  return out;
}

TEST(RegisterAllocation, CallersThatDifferOnlyByRegisterUseAroundCallsAreKept) {
  ObjectDiff with = diff_pair("ipa-ra-only", "orig", "patched-no-caller");
  ObjectDiff without = diff_pair("ipa-ra-only", "orig-no-ipa-ra", "patched-no-caller-no-ipa-ra");
  // What the project's build shows: every caller of weigh differs.
  ASSERT_EQ(changed(with), (Lines{"changed function direct", "changed function level", "changed function own_change",
                                  "changed function through", "changed function twice", "changed function weigh"}))
      << transcript(with);
  ASSERT_TRUE(calls_changed_functions(with));
  auto kept = keep_register_allocation_only(with, without);
  // through relies on weigh through weigh_plus, which is unchanged and runs on.
  EXPECT_EQ(kept_summary(kept), (Lines{"direct: weigh", "through: weigh"})) << transcript(without);
  // own_change changed in its own source, twice because level stopped being
  // pure: both differ without -fipa-ra too.
  EXPECT_EQ(changed(with), (Lines{"changed function level", "changed function own_change", "changed function twice",
                                  "changed function weigh"}));
}

TEST(RegisterAllocation, CallerReachedFromThePatchIsReplaced) {
  // uses_new, new in the patch, calls direct: it was compiled against the new
  // direct's register use, which the running copy does not keep.
  ObjectDiff with = diff_pair("ipa-ra-only", "orig", "patched");
  ObjectDiff without = diff_pair("ipa-ra-only", "orig-no-ipa-ra", "patched-no-ipa-ra");
  auto kept = keep_register_allocation_only(with, without);
  EXPECT_EQ(kept_summary(kept), (Lines{"through: weigh"}));
  Lines now = changed(with);
  EXPECT_NE(std::find(now.begin(), now.end(), "changed function direct"), now.end()) << transcript(with);
}

TEST(RegisterAllocation, NamedCallersAreReplacedAndWhatReliedOnThemFollows) {
  ObjectDiff with = diff_pair("ipa-ra-only", "orig", "patched-no-caller");
  ObjectDiff without = diff_pair("ipa-ra-only", "orig-no-ipa-ra", "patched-no-caller-no-ipa-ra");
  auto kept = keep_register_allocation_only(with, without, {"through"});
  EXPECT_EQ(kept_summary(kept), (Lines{"direct: weigh"}));
}

TEST(RegisterAllocation, StackAlignmentIsMoreThanRegisterUse) {
  // ipa-ra.c: the fix makes lookup call out, so sum3 must also align the stack
  // before calling it (-fipa-stack-alignment), which -fno-ipa-ra leaves on: it
  // differs in both pairs and stays replaced.
  ObjectDiff with = diff_pair("ipa-ra", "orig", "patched");
  ObjectDiff without = diff_pair("ipa-ra", "orig-no-ipa-ra", "patched-no-ipa-ra");
  ASSERT_TRUE(calls_changed_functions(with));
  EXPECT_TRUE(keep_register_allocation_only(with, without).empty()) << transcript(without);
  EXPECT_EQ(changed(with), (Lines{"changed function lookup", "changed function sum3"}));
}

// Diffs written by hand: functions that differ with -fipa-ra (`changed`), the
// calls of the original object, and a -fno-ipa-ra comparison in which all of
// them are identical.
std::pair<ObjectDiff, ObjectDiff> by_hand(const Lines& changed, std::map<std::string, std::set<std::string>> calls) {
  ObjectDiff with, without;
  for (const auto& name : changed) {
    with.changes.push_back({Change::changed_function, name, ".text." + name, "bytes differ", name});
    with.original_name[name] = without.original_name[name] = name;
  }
  with.references = with.patched_references = std::move(calls);
  return {with, without};
}

TEST(RegisterAllocation, ADifferenceNoChangedCalleeExplainsIsReplaced) {
  auto [with, without] = by_hand({"alone"}, {{"alone", {"unchanged"}}});
  EXPECT_TRUE(keep_register_allocation_only(with, without).empty());
  EXPECT_EQ(changed(with), Lines{"changed function alone"});
}

TEST(RegisterAllocation, ACallerIsExplainedByACalleeThatIsReplacedForLackOfExplanation) {
  // callee differs with no changed callee of its own: it is replaced, and then
  // explains caller's difference, which is kept.
  auto [with, without] = by_hand({"caller", "callee"}, {{"caller", {"callee"}}, {"callee", {}}});
  auto kept = keep_register_allocation_only(with, without);
  EXPECT_EQ(kept_summary(kept), Lines{"caller: callee"});
  EXPECT_EQ(changed(with), Lines{"changed function callee"});
}

TEST(RegisterAllocation, WithoutChangedCalleesNothingToCompile) {
  ObjectDiff body = diff_objects(elf::ElfFile::open(fmt::format("{}/body.orig.o", FIXTURE_OBJECTS)),
                                 elf::ElfFile::open(fmt::format("{}/body.patched.o", FIXTURE_OBJECTS)));
  EXPECT_FALSE(calls_changed_functions(body));
}

}  // namespace
}  // namespace suture::build::diff
