// The compile line suture build runs on the side (-fno-ipa-ra into a scratch
// object): the project's own words, writing nothing the project's compile wrote.
#include "build/wrapper/side-compile.h"

#include <gtest/gtest.h>

namespace suture::build::wrapper {
namespace {

using Words = std::vector<std::string>;

Words side(const Words& args, size_t source = 0) {
  return side_compile_args(args, parse_command_line(args), source, {"-fno-ipa-ra"}, "/scratch/x.o");
}

TEST(SideCompile, KeepsTheFlagsAndWritesOnlyTheScratchObject) {
  EXPECT_EQ(side({"-O2", "-Iinc", "-c", "x.c", "-o", "obj/x.o", "-ffunction-sections", "-fdata-sections"}),
            (Words{"-O2", "-Iinc", "-c", "x.c", "-ffunction-sections", "-fdata-sections", "-fno-ipa-ra", "-o",
                   "/scratch/x.o"}));
  EXPECT_EQ(side({"-c", "x.c", "-oobj/x.o", "-fipa-ra"}),
            (Words{"-c", "x.c", "-fipa-ra", "-fno-ipa-ra", "-o", "/scratch/x.o"}));
  // Without -o the compile wrote x.o in its directory; the side one must not.
  EXPECT_EQ(side({"-O2", "-c", "x.c"}), (Words{"-O2", "-c", "x.c", "-fno-ipa-ra", "-o", "/scratch/x.o"}));
}

TEST(SideCompile, LeavesEveryDependencyFileOut) {
  EXPECT_EQ(side({"-MD", "-MP", "-MF", "dep/x.d", "-MT", "x.o", "-MQ", "$x", "-c", "x.c", "-o", "x.o"}),
            (Words{"-c", "x.c", "-fno-ipa-ra", "-o", "/scratch/x.o"}));
  EXPECT_EQ(side({"-MMD", "-MFdep/x.d", "-MTx.o", "-Wp,-MD,.x.o.d", "-Wp,-MMD,y.d", "-MG", "-c", "x.c"}),
            (Words{"-c", "x.c", "-fno-ipa-ra", "-o", "/scratch/x.o"}));
  // A macro or path that merely looks like an option stays.
  EXPECT_EQ(side({"-DMF=1", "-I", "-MD", "-c", "x.c"}), (Words{"-DMF=1", "-I", "-MD", "-c", "x.c", "-fno-ipa-ra",
                                                              "-o", "/scratch/x.o"}));
}

TEST(SideCompile, OneSourceOfSeveral) {
  EXPECT_EQ(side({"-c", "a.c", "-x", "c", "b.inc", "-O2"}, 1),
            (Words{"-c", "-x", "c", "b.inc", "-O2", "-fno-ipa-ra", "-o", "/scratch/x.o"}));
  EXPECT_EQ(side({"-c", "a.c", "b.c"}, 0), (Words{"-c", "a.c", "-fno-ipa-ra", "-o", "/scratch/x.o"}));
}

}  // namespace
}  // namespace suture::build::wrapper
