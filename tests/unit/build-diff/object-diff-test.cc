// The object differ against pairs of objects that this machine's compiler built
// from one fixture source, without and with -DPATCHED (see fixtures/).
#include "build/diff/object-diff.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace suture::build::diff {
namespace {

elf::ElfFile object(const std::string& fixture, const char* build) {
  return elf::ElfFile::open(fmt::format("{}/{}.{}.o", FIXTURE_OBJECTS, fixture, build));
}

ObjectDiff diff_fixture(const std::string& fixture) {
  return diff_objects(object(fixture, "orig"), object(fixture, "patched"));
}

// "changed function clamp", one per change, sorted: what a test states it expects.
std::vector<std::string> summary(const ObjectDiff& diff) {
  std::vector<std::string> lines;
  for (const Change& change : diff.changes) {
    lines.push_back(fmt::format("{} {}", kind_name(change.kind), change.symbol));
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Everything the differ said, for failure messages.
std::string transcript(const ObjectDiff& diff) {
  std::string out;
  for (const Change& c : diff.changes) {
    out += fmt::format("{} {} [{}]: {}\n", kind_name(c.kind), c.symbol, c.section, c.reason);
  }
  for (const std::string& error : diff.errors) out += "error: " + error + "\n";
  return out;
}

const Change* find(const ObjectDiff& diff, const std::string& symbol) {
  for (const Change& change : diff.changes) {
    if (change.symbol == symbol) return &change;
  }
  return nullptr;
}

using Lines = std::vector<std::string>;

TEST(ObjectDiff, SameObjectHasNoChanges) {
  elf::ElfFile file = object("cold-path", "orig");
  ObjectDiff diff = diff_objects(file, file);
  EXPECT_TRUE(diff.changes.empty()) << transcript(diff);
  EXPECT_TRUE(diff.errors.empty()) << transcript(diff);
}

TEST(ObjectDiff, UnchangedSourceCompiledTwiceHasNoChanges) {
  ObjectDiff diff = diff_fixture("unchanged");
  EXPECT_TRUE(diff.changes.empty()) << transcript(diff);
  EXPECT_TRUE(diff.errors.empty()) << transcript(diff);
}

TEST(ObjectDiff, ChangedBodyIsExactlyThatFunction) {
  ObjectDiff diff = diff_fixture("body");
  EXPECT_EQ(summary(diff), Lines{"changed function clamp"}) << transcript(diff);
  EXPECT_TRUE(diff.errors.empty()) << transcript(diff);
  ASSERT_NE(find(diff, "clamp"), nullptr);
  EXPECT_EQ(find(diff, "clamp")->section, ".text.clamp");
  EXPECT_TRUE(find(diff, "clamp")->reason.starts_with("bytes differ at +0x")) << transcript(diff);
}

TEST(ObjectDiff, InlinedHelperChangesEveryCaller) {
  ObjectDiff diff = diff_fixture("inline-helper");
  EXPECT_EQ(summary(diff), (Lines{"changed function first", "changed function second"})) << transcript(diff);
}

TEST(ObjectDiff, ChangedStringLiteralChangesItsFunction) {
  ObjectDiff diff = diff_fixture("string-literal");
  EXPECT_EQ(summary(diff), Lines{"changed function banner"}) << transcript(diff);
  ASSERT_NE(find(diff, "banner"), nullptr);
  EXPECT_EQ(find(diff, "banner")->reason.rfind("string literal changed from \"suture 1.0\" to \"suture 1.1\"", 0), 0u)
      << transcript(diff);
}

TEST(ObjectDiff, ReorderedStringsAreNoChange) {
  // The functions swap places, so do their string sections and .LC labels.
  ObjectDiff diff = diff_fixture("string-moved");
  EXPECT_TRUE(diff.changes.empty()) << transcript(diff);
}

TEST(ObjectDiff, StringThatMovedToAnotherSectionIsNoChange) {
  ObjectDiff diff = diff_fixture("string-shared");
  EXPECT_EQ(summary(diff), Lines{"changed function a"}) << transcript(diff);
}

TEST(ObjectDiff, NewFunctionAndItsCaller) {
  ObjectDiff diff = diff_fixture("new-function");
  EXPECT_EQ(summary(diff), (Lines{"changed function user", "new function extra"})) << transcript(diff);
  ASSERT_NE(find(diff, "user"), nullptr);
  EXPECT_EQ(find(diff, "user")->reason, "relocation 0 (at +0x5) now refers to extra (new) instead of base");
}

TEST(ObjectDiff, RemovedFunction) {
  ObjectDiff diff = diff_objects(object("new-function", "patched"), object("new-function", "orig"));
  EXPECT_EQ(summary(diff), (Lines{"changed function user", "removed function extra"})) << transcript(diff);
  EXPECT_EQ(diff.changes.back().kind, Change::removed_function) << transcript(diff);
}

TEST(ObjectDiff, NewStaticVariablesZeroAndInitialised) {
  ObjectDiff diff = diff_fixture("new-data");
  EXPECT_EQ(summary(diff), (Lines{"changed function lookup", "new data hits", "new data weights"})) << transcript(diff);
  EXPECT_TRUE(diff.errors.empty()) << transcript(diff);
  ASSERT_NE(find(diff, "hits"), nullptr);
  EXPECT_EQ(find(diff, "hits")->reason, "new writable variable, zero-initialised");
  // `static int weights[4]` is never written, so gcc made it read-only.
  ASSERT_NE(find(diff, "weights"), nullptr);
  EXPECT_TRUE(find(diff, "weights")->reason.ends_with("variable, initialised")) << transcript(diff);
}

TEST(ObjectDiff, ChangedInitializerOfExistingGlobalIsRefusedByName) {
  ObjectDiff diff = diff_fixture("changed-initializer");
  EXPECT_EQ(summary(diff), Lines{"changed data threshold"}) << transcript(diff);
  ASSERT_EQ(diff.errors.size(), 1u) << transcript(diff);
  const std::string& error = diff.errors[0];
  EXPECT_TRUE(error.ends_with(
      "changed-initializer.patched.o: .data.threshold: threshold: initial value changed (bytes differ at +0x0) "
      "(used by over); existing data cannot change in a live patch"))
      << error;
}

TEST(ObjectDiff, ResizedExistingVariableIsRefusedByName) {
  ObjectDiff diff = diff_fixture("resized-data");
  EXPECT_EQ(summary(diff), Lines{"changed data stats"}) << transcript(diff);
  ASSERT_EQ(diff.errors.size(), 1u) << transcript(diff);
  EXPECT_NE(diff.errors[0].find(".bss.stats: stats: size changed from 8 to 16 bytes"), std::string::npos)
      << diff.errors[0];
}

TEST(ObjectDiff, StaticLocalKeepsItsIdentityAcrossRenumbering) {
  // tick's counter is counter.0 before and counter.1 after; the two new counters
  // (counter.0 and counter.2 now) belong to the new functions.
  ObjectDiff diff = diff_fixture("static-local");
  EXPECT_EQ(summary(diff), (Lines{"new data counter.0", "new data counter.2", "new function after",
                                  "new function before"}))
      << transcript(diff);
  EXPECT_EQ(find(diff, "tick"), nullptr) << transcript(diff);
  EXPECT_TRUE(diff.errors.empty()) << transcript(diff);
}

TEST(ObjectDiff, SameNamedStaticsWithShiftedNumbersAreRefused) {
  // both's two `n` are n.0 and n.1 before, n.1 and n.2 after; another's new `n`
  // is n.0. Pairing by number would swap state between the two, so: an error
  // naming them, and `both` changed since it no longer refers to known variables.
  ObjectDiff diff = diff_fixture("static-ambiguous");
  ASSERT_EQ(diff.errors.size(), 1u) << transcript(diff);
  EXPECT_NE(diff.errors[0].find("static-ambiguous.patched.o: n.1, n.2: cannot tell which is which of n.0, n.1 in "),
            std::string::npos)
      << diff.errors[0];
  ASSERT_NE(find(diff, "both"), nullptr) << transcript(diff);
  EXPECT_EQ(find(diff, "both")->kind, Change::changed_function);
  EXPECT_NE(find(diff, "another"), nullptr) << transcript(diff);
}

TEST(ObjectDiff, ChangedMacroConstantChangesOnlyItsUser) {
  ObjectDiff diff = diff_fixture("macro-constant");
  EXPECT_EQ(summary(diff), Lines{"changed function fits"}) << transcript(diff);
}

TEST(ObjectDiff, ChangeInColdPartIsAChangeOfItsParent) {
  ObjectDiff diff = diff_fixture("cold-path");
  EXPECT_EQ(summary(diff), Lines{"changed function parse"}) << transcript(diff);
  ASSERT_NE(find(diff, "parse"), nullptr);
  EXPECT_TRUE(find(diff, "parse")->reason.starts_with("cold part parse.cold changed: ")) << transcript(diff);
}

TEST(ObjectDiff, ClonesAreCorrelatedDespiteTheirNumbers) {
  ObjectDiff diff = diff_fixture("clones");
  EXPECT_EQ(summary(diff), Lines{"changed function second"}) << transcript(diff);
}

TEST(ObjectDiff, MergedConstantsAndJumpTables) {
  // ratio's double constant changed; the other constants, strings and jump tables
  // are the same.
  ObjectDiff diff = diff_fixture("constants");
  EXPECT_EQ(summary(diff), Lines{"changed function ratio"}) << transcript(diff);
  ASSERT_NE(find(diff, "ratio"), nullptr);
  EXPECT_NE(find(diff, "ratio")->reason.find("now refers to constant"), std::string::npos) << transcript(diff);
}

TEST(ObjectDiff, CxxComdatInlineFunctionsAndMangledNames) {
  // app::scale stays out of line in its COMDAT group: it changes, its callers do
  // not. app::offset is inlined into both users, which change.
  ObjectDiff diff = diff_fixture("comdat");
  EXPECT_EQ(summary(diff), (Lines{"changed function _ZN3app12use_offset_aEi",
                                  "changed function _ZN3app12use_offset_bEi", "changed function _ZN3app5scaleEi"}))
      << transcript(diff);
  ASSERT_NE(find(diff, "_ZN3app5scaleEi"), nullptr);
  EXPECT_EQ(find(diff, "_ZN3app5scaleEi")->section, ".text._ZN3app5scaleEi");
}


const Change* find_forgiven(const ObjectDiff& diff, const std::string& symbol) {
  for (const Change& change : diff.forgiven) {
    if (change.symbol == symbol) return &change;
  }
  return nullptr;
}

TEST(ObjectDiff, LineNumbersThatOnlyMovedAreForgiven) {
  ObjectDiff diff = diff_fixture("line-only");
  std::string all = transcript(diff);
  for (const Change& f : diff.forgiven) all += fmt::format("forgiven {}: {}\n", f.symbol, f.reason);
  // Only the real change and the line used as a value are changes.
  EXPECT_EQ(summary(diff), (Lines{"changed function fixed", "changed function line_value",
                                  "changed function optimise", "changed function quieter"}))
      << all;
  EXPECT_TRUE(diff.errors.empty()) << all;
  ASSERT_NE(find_forgiven(diff, "checked"), nullptr) << all;
  const std::string& checked = find_forgiven(diff, "checked")->reason;
  EXPECT_TRUE(checked.starts_with("only line numbers changed: ")) << checked;
  EXPECT_NE(checked.find("line 111 -> 112 (argument 3 of __assert_fail)"), std::string::npos) << checked;
  EXPECT_NE(checked.find("line 112 -> 113 (argument 3 of __assert_fail)"), std::string::npos) << checked;
  ASSERT_NE(find_forgiven(diff, "logged"), nullptr) << all;
  EXPECT_NE(find_forgiven(diff, "logged")->reason.find("line 118 -> 119 (argument 2 of log_at)"), std::string::npos)
      << all;
  ASSERT_NE(find_forgiven(diff, "where"), nullptr) << all;
  EXPECT_NE(find_forgiven(diff, "where")->reason.find("line 124 -> 125 in string"), std::string::npos) << all;
  EXPECT_EQ(diff.forgiven.size(), 3u) << all;
}

TEST(ObjectDiff, RealChangeNextToAMovedLineIsNamedForTheRealChange) {
  ObjectDiff diff = diff_fixture("line-only");
  ASSERT_NE(find(diff, "fixed"), nullptr) << transcript(diff);
  ASSERT_NE(find(diff, "line_value"), nullptr) << transcript(diff);
  EXPECT_TRUE(find(diff, "line_value")->reason.starts_with("bytes differ at +0x")) << transcript(diff);
  // quieter's 3 -> 2 has no __FILE__ before it: a plain change of an argument.
  ASSERT_NE(find(diff, "quieter"), nullptr) << transcript(diff);
  EXPECT_TRUE(find(diff, "quieter")->reason.starts_with("bytes differ at +0x")) << transcript(diff);
  // optimise's 2 -> 3 follows a file name, but not this unit's.
  ASSERT_NE(find(diff, "optimise"), nullptr) << transcript(diff);
  EXPECT_EQ(find_forgiven(diff, "fixed"), nullptr);
}

TEST(ObjectDiff, LineRuleWorksBothWaysAndForgivesNothingInEqualObjects) {
  // The same objects the other way round give the same verdicts (no direction
  // in the rule), and an object against itself forgives nothing.
  ObjectDiff back = diff_objects(object("line-only", "patched"), object("line-only", "orig"));
  EXPECT_EQ(summary(back), (Lines{"changed function fixed", "changed function line_value",
                                  "changed function optimise", "changed function quieter"}))
      << transcript(back);
  EXPECT_EQ(back.forgiven.size(), 3u) << transcript(back);
  elf::ElfFile same = object("line-only", "orig");
  EXPECT_TRUE(diff_objects(same, same).forgiven.empty());
}

TEST(ObjectDiff, CallerThatReliedOnTheCalleesRegistersIsChanged) {
  // sum3's source is the same; gcc compiled it again because lookup now
  // clobbers the registers sum3 kept its values in (-fipa-ra).
  ObjectDiff diff = diff_fixture("ipa-ra");
  EXPECT_EQ(summary(diff), (Lines{"changed function lookup", "changed function sum3"})) << transcript(diff);
  ASSERT_NE(find(diff, "sum3"), nullptr);
  EXPECT_NE(find(diff, "sum3")->reason.find("calls changed function lookup"), std::string::npos) << transcript(diff);
}

TEST(ObjectDiff, PairsEveryFunctionAndVariableWithItsOriginalName) {
  // tick's counter is counter.0 before and counter.1 after.
  ObjectDiff diff = diff_fixture("static-local");
  ASSERT_TRUE(diff.original_name.count("counter.1")) << transcript(diff);
  EXPECT_EQ(diff.original_name.at("counter.1"), "counter.0");
  EXPECT_EQ(diff.original_name.at("tick"), "tick");
  EXPECT_FALSE(diff.original_name.count("counter.2")) << "after's counter is new";
  // Clones: the names of both objects, each paired.
  ObjectDiff clones = diff_fixture("clones");
  for (const auto& [patched, original] : clones.original_name) {
    EXPECT_EQ(patched, original) << "clones.c numbers its clones the same both times";
  }
  ASSERT_NE(find(clones, "second"), nullptr);
  EXPECT_EQ(find(clones, "second")->original, "second");
}


TEST(ObjectDiff, ChangedStaticLocalAndConstantTableAreRefusedWithTheirUsers) {
  ObjectDiff diff = diff_fixture("changed-static-data");
  ASSERT_EQ(diff.errors.size(), 2u) << transcript(diff);
  std::string all = diff.errors[0] + "\n" + diff.errors[1];
  EXPECT_NE(all.find(": id.0: initial value changed (bytes differ at +0x0) (used by next_id); existing data cannot "
                     "change in a live patch"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find(": weights: initial value changed (bytes differ at +0x1c) (used by weight, weight_sum); "),
            std::string::npos)
      << all;
  for (const Change& change : diff.changes) {
    if (change.kind == Change::changed_data) {
      EXPECT_EQ(change.original, change.symbol) << transcript(diff);
    }
  }
}


TEST(ObjectDiff, CloneThatDisappearsChangesEveryCaller) {
  // check.part.0 is gone once check is small enough to inline whole: first and
  // second, the same in source, no longer call it.
  ObjectDiff diff = diff_fixture("clone-gone");
  EXPECT_EQ(summary(diff), (Lines{"changed function first", "changed function second",
                                  "removed function check.part.0"}))
      << transcript(diff);
}

TEST(ObjectDiff, CloneWhoseArgumentMeansAnotherFieldChangesOnlyItsCaller) {
  // score.isra.0 takes one int both times and does the same with it: its code
  // is the same. The fix lives entirely in rank, the same in source, which now
  // passes another field of the struct: that is the change, and the only one.
  ObjectDiff diff = diff_fixture("clone-abi");
  EXPECT_EQ(summary(diff), Lines{"changed function rank"}) << transcript(diff);
  ASSERT_NE(find(diff, "rank"), nullptr);
  EXPECT_TRUE(find(diff, "rank")->reason.starts_with("bytes differ at +0x")) << transcript(diff);
}

}  // namespace
}  // namespace suture::build::diff
