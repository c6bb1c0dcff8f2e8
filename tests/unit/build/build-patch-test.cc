// suture build end to end on small make projects: which functions a fix
// replaces and which callers the running program keeps, because they differ
// only by interprocedural register allocation around calls to changed callees.
#include "build/build-patch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace suture::build {
namespace {

namespace fs = std::filesystem;

class BuildPatch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("suture-build-patch-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The fixture project, copied and built the way its developers build it.
  fs::path project(const std::string& name) {
    fs::path tree = dir_ / name;
    fs::copy(fs::path(FIXTURES_DIR) / name, tree, fs::copy_options::recursive);
    std::string make = "make -s -C '" + tree.string() + "' >/dev/null 2>&1";
    EXPECT_EQ(std::system(make.c_str()), 0) << make;
    return tree;
  }

  BuildReport build(const fs::path& tree) {
    BuildOptions options;
    options.source = tree.string();
    options.diffs = {(tree / "fix.diff").string()};
    options.output = (dir_ / "out").string();
    options.build = "make -s";
    options.cache = (dir_ / "cache").string();
    options.wrapper = SUTURE_CC;
    return build_patches(options);
  }

  // Every side compile -fno-ipa-ra made, with its modification time.
  std::map<std::string, fs::file_time_type> side_objects() {
    std::map<std::string, fs::file_time_type> found;
    for (const auto& e : fs::recursive_directory_iterator(dir_ / "cache"))
      if (e.path().parent_path().filename() == "no-ipa-ra") found[e.path().string()] = e.last_write_time();
    return found;
  }

  fs::path dir_;
};

std::string all(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

TEST_F(BuildPatch, CallerThatDiffersOnlyByRegisterAllocationIsKept) {
  auto report = build(project("kept-caller"));
  ASSERT_EQ(report.patches.size(), 1u);
  const auto& patch = report.patches[0];
  EXPECT_EQ(patch.changed, std::vector<std::string>{"score"}) << all(patch.reasons);
  ASSERT_EQ(report.forgiven.size(), 1u) << all(report.forgiven);
  EXPECT_TRUE(report.forgiven[0].starts_with(
      "target.c: main: kept; differs only by interprocedural register allocation around calls to score; score is "
      "reached through a register-preserving thunk (rsi"))
      << report.forgiven[0];
}

TEST_F(BuildPatch, KeptCallerIsReplacedWhenNoThunkCanCoverIt) {
  auto report = build(project("jump-table"));
  ASSERT_EQ(report.patches.size(), 1u);
  const auto& patch = report.patches[0];
  auto changed = patch.changed;
  std::sort(changed.begin(), changed.end());
  EXPECT_EQ(changed, (std::vector<std::string>{"main", "step"})) << all(patch.notes);
  EXPECT_TRUE(report.forgiven.empty()) << all(report.forgiven);
  EXPECT_TRUE(std::any_of(patch.notes.begin(), patch.notes.end(), [](const std::string& n) {
    return n.starts_with("target.c: main is replaced although it differs only by interprocedural register "
                         "allocation around calls to step: the registers the old step writes cannot be read");
  })) << all(patch.notes);
}

TEST_F(BuildPatch, SideCompilesAreCachedLikeTheOriginalBuild) {
  auto tree = project("kept-caller");
  auto first = build(tree);
  auto made = side_objects();
  EXPECT_EQ(made.size(), 2u) << "one -fno-ipa-ra object for each side";
  auto second = build(tree);
  EXPECT_TRUE(second.original_cached);
  EXPECT_EQ(side_objects(), made) << "the second build compiled again";
  EXPECT_EQ(second.forgiven, first.forgiven);
}

TEST_F(BuildPatch, ACacheGivenRelativeToTheCurrentDirectory) {
  // The builds run in other directories; the cache is where the user meant.
  auto tree = project("kept-caller");
  auto here = fs::current_path();
  fs::current_path(dir_);
  BuildOptions options;
  options.source = tree.string();
  options.diffs = {(tree / "fix.diff").string()};
  options.output = "out";
  options.build = "make -s";
  options.cache = "relative-cache";
  options.wrapper = SUTURE_CC;
  std::string error;
  try {
    build_patches(options);
  } catch (const std::exception& e) {
    error = e.what();
  }
  fs::current_path(here);
  EXPECT_EQ(error, "");
  EXPECT_TRUE(fs::exists(dir_ / "relative-cache"));
}

}  // namespace
}  // namespace suture::build
