// Reading the make rules gcc and clang write with -MD, and where the driver
// puts them.
#include "build/wrapper/dependency-file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

using Strings = std::vector<std::string>;

TEST(DependencyRules, OneRuleOverContinuationLines) {
  EXPECT_EQ(parse_dependency_rules("main.o: main.c src/mathx.h \\\n /usr/include/stdio.h \\\n  x.h\n"),
            (Strings{"main.c", "src/mathx.h", "/usr/include/stdio.h", "x.h"}));
}

TEST(DependencyRules, PhonyRulesFromMpAddNothingNew) {
  EXPECT_EQ(parse_dependency_rules("main.o: main.c a.h b.h\n\na.h:\n\nb.h:\n"), (Strings{"main.c", "a.h", "b.h"}));
}

TEST(DependencyRules, EscapedSpacesHashesAndDollars) {
  EXPECT_EQ(parse_dependency_rules("o.o: my\\ dir/a.h b\\#1.h c$$d.h\n"), (Strings{"my dir/a.h", "b#1.h", "c$d.h"}));
}

TEST(DependencyRules, SeveralTargetsAndCrLf) {
  EXPECT_EQ(parse_dependency_rules("a.o a.d: a.c \\\r\n a.h\r\n"), (Strings{"a.c", "a.h"}));
}

TEST(DependencyRules, AColonInsideANameIsNotTheRuleColon) {
  EXPECT_EQ(parse_dependency_rules("x.o: dir:odd/a.h\n"), (Strings{"dir:odd/a.h"}));
}

TEST(DependencyRules, ARuleWithoutColonIsAnError) {
  EXPECT_THROW(parse_dependency_rules("main.o main.c\n"), Error);
}

TEST(OwnDependencyFile, WhereTheDriverWritesIt) {
  auto at = [](Strings args, const std::string& source) { return own_dependency_file(parse_command_line(args), source); };
  EXPECT_EQ(at({"-c", "src/x.c"}, "src/x.c"), std::nullopt);
  EXPECT_EQ(at({"-MD", "-c", "src/x.c"}, "src/x.c"), "x.d");                  // stem, current directory
  EXPECT_EQ(at({"-MMD", "-c", "src/x.c", "-o", "obj/x.o"}, "src/x.c"), "obj/x.d");  // -o with .d
  EXPECT_EQ(at({"-MD", "-MF", "deps/x.dep", "-c", "x.c", "-o", "x.o"}, "x.c"), "deps/x.dep");
  EXPECT_EQ(at({"-MD", "-MFdeps/y.dep", "-c", "x.c"}, "x.c"), "deps/y.dep");
}

TEST(HeadersFromFile, AbsoluteAndWithoutTheSource) {
  auto dir = std::filesystem::temp_directory_path() / ("suture-deps-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "x.d") << "x.o: ../src/x.c ../src/x.h \\\n /usr/include/stdio.h\n";
  auto headers = headers_from_file("x.d", "../src/x.c", dir.string());
  ASSERT_TRUE(headers);
  EXPECT_EQ(*headers, (Strings{(dir.parent_path() / "src/x.h").string(), "/usr/include/stdio.h"}));
  EXPECT_EQ(headers_from_file("missing.d", "x.c", dir.string()), std::nullopt);
  std::ofstream(dir / "bad.d") << "no colon here\n";
  EXPECT_EQ(headers_from_file("bad.d", "x.c", dir.string()), std::nullopt);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace suture::build::wrapper
