#include "build/wrapper/real-compiler.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "build/wrapper/shims.h"
#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;
using Words = std::vector<std::string>;

// A file tree of fake programs: wrap/ holds "the wrapper" and links to it,
// bin0/ ccache's masquerading links, bin1/ and bin2/ real programs.
class RealCompiler : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("suture-real-cc-" + std::to_string(getpid()));
    fs::remove_all(root);
    for (auto dir : {"wrap", "bin0", "bin1", "bin2"}) fs::create_directories(root / dir);
    program("wrap/suture-cc");
    fs::create_symlink("suture-cc", root / "wrap/gcc");
    fs::create_symlink("suture-cc", root / "wrap/ccache");
    program("bin1/gcc");
    program("bin1/ccache");
    program("bin2/gcc");
    program("bin2/g++");
    fs::create_symlink(root / "bin1/ccache", root / "bin0/gcc");
    env.cwd = root.string();
    env.own_exe = (root / "wrap/suture-cc").string();
  }
  void TearDown() override { fs::remove_all(root); }

  void program(const std::string& name) {
    std::ofstream(root / name) << "#!/bin/sh\n";
    fs::permissions(root / name, fs::perms::owner_all);
  }
  std::string at(const std::string& name) const { return (root / name).string(); }
  std::string path(const Words& dirs) const {
    std::string out;
    for (const auto& d : dirs) out += (out.empty() ? "" : ":") + at(d);
    return out;
  }

  fs::path root;
  Environment env;
};

TEST_F(RealCompiler, LinkFindsTheNextProgramOfItsNameAfterItsOwnDirectory) {
  env.path = path({"wrap", "bin1", "bin2"});
  auto inv = resolve_invocation({"gcc", "-c", "x.c"}, env);
  EXPECT_EQ(inv.compiler, at("bin1/gcc"));
  EXPECT_EQ(inv.args, (Words{"-c", "x.c"}));
  EXPECT_TRUE(inv.launcher.empty());

  // Entries before the wrapper's own directory are not "next".
  env.path = path({"bin1", "wrap", "bin2"});
  EXPECT_EQ(resolve_invocation({"gcc"}, env).compiler, at("bin2/gcc"));
  // Called by a path rather than through PATH.
  EXPECT_EQ(resolve_invocation({at("wrap/gcc")}, env).compiler, at("bin2/gcc"));
}

TEST_F(RealCompiler, NeverItself) {
  env.path = path({"wrap", "wrap", "bin2"});
  EXPECT_EQ(resolve_invocation({"gcc"}, env).compiler, at("bin2/gcc"));
  env.path = path({"wrap"});
  EXPECT_THROW(resolve_invocation({"gcc"}, env), Error);
  EXPECT_THROW(resolve_invocation({"suture-cc", at("wrap/gcc"), "-c", "x.c"}, env), Error);
}

TEST_F(RealCompiler, DirectlyWithTheCompilerAsFirstWord) {
  env.path = path({"bin2", "bin1"});
  auto inv = resolve_invocation({"suture-cc", "gcc", "-c", "x.c"}, env);
  EXPECT_EQ(inv.compiler, at("bin2/gcc"));
  EXPECT_EQ(inv.args, (Words{"-c", "x.c"}));
  EXPECT_EQ(resolve_invocation({"suture-cc", at("bin1/gcc"), "-c", "x.c"}, env).compiler, at("bin1/gcc"));
}

TEST_F(RealCompiler, DirectlyWithTheCompilerFromTheEnvironment) {
  env.path = path({"bin2"});
  EXPECT_THROW(resolve_invocation({"suture-cc", "-c", "x.c"}, env), Error);
  env.real_cc = "gcc";
  env.real_cxx = "g++";
  auto inv = resolve_invocation({"suture-cc", "-c", "x.c"}, env);
  EXPECT_EQ(inv.compiler, at("bin2/gcc"));
  EXPECT_EQ(inv.args, (Words{"-c", "x.c"}));
  // A source first is an argument, not a compiler, even if it is executable.
  EXPECT_EQ(resolve_invocation({"suture-cc", "x.c"}, env).args, Words{"x.c"});
  EXPECT_EQ(resolve_invocation({"/opt/bin/suture-c++", "-c", "x.cc"}, env).compiler, at("bin2/g++"));
}

TEST_F(RealCompiler, LauncherStaysInFrontOfTheCompiler) {
  env.path = path({"wrap", "bin1", "bin2"});
  auto inv = resolve_invocation({"suture-cc", "ccache", "gcc", "-c", "x.c"}, env);
  EXPECT_EQ(inv.launcher, Words{at("bin1/ccache")});
  EXPECT_EQ(inv.compiler, at("bin1/gcc"));
  EXPECT_EQ(inv.command({"-c", "x.c"}), (Words{at("bin1/ccache"), at("bin1/gcc"), "-c", "x.c"}));

  env.real_cc = "ccache gcc";
  EXPECT_EQ(resolve_invocation({"suture-cc", "-c", "x.c"}, env).launcher, Words{at("bin1/ccache")});

  // A Makefile saying CC = ccache gcc, with our ccache link first on PATH: the
  // compiler behind it skips the wrapper's own gcc link.
  auto linked = resolve_invocation({"ccache", "gcc", "-c", "x.c"}, env);
  EXPECT_EQ(linked.launcher, Words{at("bin1/ccache")});
  EXPECT_EQ(linked.compiler, at("bin1/gcc"));
  EXPECT_EQ(linked.args, (Words{"-c", "x.c"}));

  auto stats = resolve_invocation({"ccache", "-s"}, env);
  EXPECT_TRUE(stats.pass_through);
  EXPECT_EQ(stats.compiler, at("bin1/ccache"));
}

TEST_F(RealCompiler, CcacheMasqueradingLinkBecomesTheLauncher) {
  env.path = path({"wrap", "bin0", "bin2"});
  auto inv = resolve_invocation({"gcc", "-c", "x.c"}, env);
  EXPECT_EQ(inv.launcher, Words{fs::canonical(root / "bin1/ccache").string()});
  EXPECT_EQ(inv.compiler, at("bin2/gcc"));
  // Under another wrapper (which already runs the launcher), just the compiler.
  env.nested = true;
  inv = resolve_invocation({"gcc", "-c", "x.c"}, env);
  EXPECT_TRUE(inv.launcher.empty());
  EXPECT_EQ(inv.compiler, at("bin2/gcc"));
}

TEST_F(RealCompiler, Shims) {
  auto names = shim_names(path({"bin1", "bin2"}));
  EXPECT_EQ(names, (Words{"ccache", "g++", "gcc"}));
  make_shims(at("shims"), env.own_exe, names);
  make_shims(at("shims"), env.own_exe, names);  // again: replaces
  for (const auto& name : names) EXPECT_EQ(fs::read_symlink(root / "shims" / name), env.own_exe);
  // The real system's compilers are found too.
  auto system = shim_names("/usr/bin");
  EXPECT_NE(std::find(system.begin(), system.end(), "gcc"), system.end());
  EXPECT_NE(std::find(system.begin(), system.end(), "cc"), system.end());
  EXPECT_EQ(std::find(system.begin(), system.end(), "gcc-ar"), system.end());
}

}  // namespace
}  // namespace suture::build::wrapper
