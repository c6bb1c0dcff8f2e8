#include "build/wrapper/command-line.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "build/wrapper/split-compile.h"

namespace suture::build::wrapper {
namespace {

using Words = std::vector<std::string>;

CommandLine parse(const Words& args) { return parse_command_line(args); }

TEST(CommandLine, CompileWithoutOutputWritesBasenameInCwd) {
  auto line = parse({"-O2", "-c", "dir/x.c"});
  ASSERT_EQ(line.step, Step::compile);
  ASSERT_EQ(line.sources.size(), 1u);
  EXPECT_EQ(line.sources[0].path, "dir/x.c");
  EXPECT_EQ(line.sources[0].language, "c");
  EXPECT_EQ(objects_of(line, "/build"), Words{"/build/x.o"});
}

TEST(CommandLine, CompileWithSeveralSourcesGivesEachItsObject) {
  auto line = parse({"-c", "a.c", "lib/b.cc", "../c.S", "-Iinclude"});
  ASSERT_EQ(line.step, Step::compile);
  EXPECT_EQ(objects_of(line, "/w/sub"), (Words{"/w/sub/a.o", "/w/sub/b.o", "/w/sub/c.o"}));
  EXPECT_EQ(line.sources[1].language, "c++");
  EXPECT_EQ(line.sources[2].language, "assembler-with-cpp");
}

TEST(CommandLine, OutputSpellings) {
  EXPECT_EQ(objects_of(parse({"-c", "x.c", "-o", "out/y.o"}), "/b"), Words{"/b/out/y.o"});
  EXPECT_EQ(objects_of(parse({"-c", "x.c", "-oy.o"}), "/b"), Words{"/b/y.o"});
  EXPECT_EQ(objects_of(parse({"-o", "/abs/z.o", "-c", "x.c"}), "/b"), Words{"/abs/z.o"});
  EXPECT_EQ(objects_of(parse({"-c", "../x.c", "-o", "../obj/./x.o"}), "/b/c"), Words{"/b/obj/x.o"});
}

TEST(CommandLine, ObjectOfAFileWithoutExtension) {
  // gcc -c -x c foo writes foo.o.
  auto line = parse({"-c", "-x", "c", "foo"});
  ASSERT_EQ(line.step, Step::compile);
  EXPECT_EQ(line.sources[0].language, "c");
  EXPECT_TRUE(line.sources[0].explicit_language);
  EXPECT_EQ(objects_of(line, "/b"), Words{"/b/foo.o"});
}

TEST(CommandLine, LanguageFromDashX) {
  auto line = parse({"-c", "-x", "c++", "a.c", "-xc", "b.inc", "-x", "none", "c.cc", "d.o"});
  ASSERT_EQ(line.sources.size(), 3u);
  EXPECT_EQ(line.sources[0].language, "c++");
  EXPECT_EQ(line.sources[1].language, "c");
  EXPECT_EQ(line.sources[2].language, "c++");
  EXPECT_FALSE(line.sources[2].explicit_language);
  EXPECT_EQ(line.inputs, Words{"d.o"});
}

TEST(CommandLine, LanguagesByExtension) {
  EXPECT_EQ(language_of("a.c"), "c");
  EXPECT_EQ(language_of("a.C"), "c++");
  EXPECT_EQ(language_of("a.cpp"), "c++");
  EXPECT_EQ(language_of("a.cxx"), "c++");
  EXPECT_EQ(language_of("a.c++"), "c++");
  EXPECT_EQ(language_of("a.s"), "assembler");
  EXPECT_EQ(language_of("a.i"), "cpp-output");
  EXPECT_EQ(language_of("a.o"), "");
  EXPECT_EQ(language_of("liba.a"), "");
  EXPECT_EQ(language_of("dir.c/file"), "");
}

TEST(CommandLine, SeparateArgumentsAreNotOperands) {
  auto line = parse({"-c", "-include", "config.h", "-MF", "x.d", "-MT", "x.o", "-I", "inc.c", "-D", "X", "-isystem",
                     "sys", "-Xclang", "-foo", "x.c"});
  ASSERT_EQ(line.step, Step::compile);
  ASSERT_EQ(line.sources.size(), 1u);
  EXPECT_EQ(line.sources[0].path, "x.c");
  EXPECT_TRUE(line.inputs.empty());
}

TEST(CommandLine, FlagsAlreadyPresentAreNotAddedAgain) {
  EXPECT_EQ(flags_to_add(parse({"-c", "x.c"})), (Words{"-ffunction-sections", "-fdata-sections"}));
  EXPECT_EQ(flags_to_add(parse({"-c", "-ffunction-sections", "x.c"})), Words{"-fdata-sections"});
  EXPECT_TRUE(flags_to_add(parse({"-fdata-sections", "-c", "-ffunction-sections", "x.c"})).empty());
}

TEST(CommandLine, DependencyOptionsAreSeenNotChanged) {
  Words args = {"-MD", "-MF", "deps/x.d", "-MT", "x.o", "-c", "x.c"};
  auto line = parse(args);
  ASSERT_EQ(line.step, Step::compile);
  EXPECT_TRUE(line.dependency_file);
  EXPECT_TRUE(line.dependency_file_named);
  EXPECT_TRUE(line.dependency_target);
  // The wrapper runs ARGS + flags_to_add: the dependency options stay as written.
  for (const auto& flag : flags_to_add(line)) EXPECT_TRUE(flag.starts_with("-f")) << flag;
}

TEST(CommandLine, NonBuildingInvocations) {
  EXPECT_EQ(parse({"-E", "x.c"}).step, Step::other);
  EXPECT_EQ(parse({"-S", "x.c"}).step, Step::other);
  EXPECT_EQ(parse({"-M", "x.c"}).step, Step::other);
  EXPECT_EQ(parse({"-MM", "-c", "x.c"}).step, Step::other);
  EXPECT_EQ(parse({"--version"}).step, Step::other);
  EXPECT_EQ(parse({"-v"}).step, Step::other);
  EXPECT_EQ(parse({"-print-prog-name=ld"}).step, Step::other);
  EXPECT_EQ(parse({"-dumpmachine"}).step, Step::other);
  EXPECT_EQ(parse({"-x", "c", "-c", "-", "-o", "/dev/null"}).step, Step::other);
  EXPECT_EQ(parse({"-c", "x.h"}).step, Step::other);
  EXPECT_EQ(parse({"-c", "a.c", "b.c", "-o", "x.o"}).step, Step::other);
  EXPECT_EQ(parse({"-fsyntax-only", "x.c"}).step, Step::other);
  EXPECT_EQ(parse({"-E", "x.c"}).why, "-E");
}

TEST(CommandLine, LinkAndCompileAndLink) {
  auto link = parse({"-o", "prog", "a.o", "libx.a", "-lm", "-l", "pthread", "-Wl,--as-needed"});
  ASSERT_EQ(link.step, Step::link);
  EXPECT_EQ(link.inputs, (Words{"a.o", "libx.a"}));
  EXPECT_EQ(link.libraries, (Words{"-lm", "-lpthread"}));
  EXPECT_EQ(link_output(link, "/b"), "/b/prog");
  EXPECT_EQ(link_output(parse({"a.o"}), "/b"), "/b/a.out");
  EXPECT_EQ(parse({"-shared", "-o", "libx.so", "a.o"}).step, Step::link);
  EXPECT_EQ(parse({"a.c", "b.o", "-o", "prog"}).step, Step::compile_and_link);
}

TEST(CommandLine, ResponseFilesAreReadForParsing) {
  auto dir = std::filesystem::temp_directory_path() / ("suture-rsp-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "args.rsp") << "-c 'my file.c'\n-o \"out dir/x.o\" -DX=\\\"y\\\"\n";
  auto args = expand_response_files({"-O2", "@args.rsp", "@missing.rsp"}, dir.string());
  EXPECT_EQ(args, (Words{"-O2", "-c", "my file.c", "-o", "out dir/x.o", "-DX=\"y\"", "@missing.rsp"}));
  std::filesystem::remove_all(dir);
}

TEST(SplitCompile, EachSourceToItsOwnObjectThenLinkThose) {
  Words args = {"-O2", "-Iinc", "tool.c", "lib/helper.c", "extra.o", "-o", "bin/tool", "-lm"};
  auto line = parse(args);
  ASSERT_EQ(line.step, Step::compile_and_link);
  auto plan = plan_split(args, line, "/objs", "/w");
  ASSERT_EQ(plan.compiles.size(), 2u);
  const auto& first = plan.compiles[0];
  EXPECT_TRUE(first.object.starts_with("/objs/tool-")) << first.object;
  EXPECT_TRUE(first.object.ends_with("/0-tool.o")) << first.object;
  EXPECT_TRUE(plan.compiles[1].object.ends_with("/1-helper.o"));
  EXPECT_EQ(first.args, (Words{"-O2", "-Iinc", "-ffunction-sections", "-fdata-sections", "-c", "tool.c", "-o",
                               first.object}));
  EXPECT_EQ(plan.link_args, (Words{"-O2", "-Iinc", plan.compiles[0].object, plan.compiles[1].object, "extra.o", "-o",
                                   "bin/tool", "-lm"}));
  // The same command always uses the same objects; another output, others.
  EXPECT_EQ(plan_split(args, line, "/objs", "/w").compiles[0].object, first.object);
  auto other = parse({"tool.c", "-o", "tool2"});
  EXPECT_NE(plan_split({"tool.c", "-o", "tool2"}, other, "/objs", "/w").compiles[0].object, first.object);
}

TEST(SplitCompile, ExplicitLanguageFollowsTheSourceNotTheLink) {
  Words args = {"-x", "c", "gen", "-x", "none", "main.o"};
  auto line = parse(args);
  ASSERT_EQ(line.step, Step::compile_and_link);
  auto plan = plan_split(args, line, "/objs", "/w");
  ASSERT_EQ(plan.compiles.size(), 1u);
  auto& compile = plan.compiles[0].args;
  EXPECT_EQ(Words(compile.end() - 6, compile.end()), (Words{"-c", "-x", "c", "gen", "-o", plan.compiles[0].object}));
  EXPECT_EQ(plan.link_args, (Words{plan.compiles[0].object, "main.o"}));
}

TEST(SplitCompile, DependencyFileKeepsTheNameTheCombinedCommandGaveIt) {
  Words args = {"-MMD", "-MP", "tool.c", "-o", "out/tool"};
  auto line = parse(args);
  auto plan = plan_split(args, line, "/objs", "/w");
  auto& compile = plan.compiles[0].args;
  auto mf = std::find(compile.begin(), compile.end(), "-MF");
  ASSERT_NE(mf, compile.end());
  EXPECT_EQ(*(mf + 1), "out/tool.d");
  EXPECT_EQ(*(mf + 2), "-MT");
  EXPECT_EQ(*(mf + 3), "out/tool");

  Words named = {"-MD", "-MF", "my.d", "a.c"};
  auto named_plan = plan_split(named, parse(named), "/objs", "/w");
  EXPECT_EQ(std::count(named_plan.compiles[0].args.begin(), named_plan.compiles[0].args.end(), "-MF"), 1);

  Words two = {"-MD", "a.c", "b.c"};
  auto two_plan = plan_split(two, parse(two), "/objs", "/w");
  auto mf_b = std::find(two_plan.compiles[1].args.begin(), two_plan.compiles[1].args.end(), "-MF");
  ASSERT_NE(mf_b, two_plan.compiles[1].args.end());
  EXPECT_EQ(*(mf_b + 1), "a-b.d");
}

}  // namespace
}  // namespace suture::build::wrapper
