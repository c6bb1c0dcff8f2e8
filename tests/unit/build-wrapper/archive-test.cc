// Static archives made by the real `ar`: which objects they hold.
#include "build/wrapper/archive.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

class Archive : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("suture-ar-" + std::to_string(getpid()) + "-" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir / "a");
    fs::create_directories(dir / "b");
    // Two objects named alike in two directories, and one whose name is too
    // long for the 16-byte header (a GNU long-name entry).
    std::ofstream(dir / "a/util.c") << "int util_a(void) { return 1; }\n";
    std::ofstream(dir / "b/util.c") << "int util_b(void) { return 2; }\n";
    std::ofstream(dir / "a/a_rather_long_file_name.c") << "int long_one(void) { return 3; }\n";
    sh("cd " + (dir / "a").string() + " && cc -c util.c a_rather_long_file_name.c");
    sh("cd " + (dir / "b").string() + " && cc -c util.c");
  }
  void TearDown() override { fs::remove_all(dir); }
  void sh(const std::string& command) { ASSERT_EQ(std::system(command.c_str()), 0) << command; }
  fs::path dir;
};

TEST_F(Archive, MembersByNameIncludingLongNames) {
  sh("cd " + (dir / "a").string() + " && ar rc liba.a util.o a_rather_long_file_name.o");
  auto members = read_archive((dir / "a/liba.a").string());
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].name, "util.o");
  EXPECT_EQ(members[1].name, "a_rather_long_file_name.o");
  EXPECT_EQ(members[0].bytes.size(), fs::file_size(dir / "a/util.o"));
  EXPECT_TRUE(is_archive((dir / "a/liba.a").string()));
  EXPECT_FALSE(is_archive((dir / "a/util.o").string()));
}

TEST_F(Archive, HoldsAnObjectByItsBytesNotOnlyItsName) {
  sh("cd " + (dir / "a").string() + " && ar rcs liba.a util.o a_rather_long_file_name.o");
  auto lib = (dir / "a/liba.a").string();
  EXPECT_TRUE(archive_holds(lib, (dir / "a/util.o").string()));
  EXPECT_TRUE(archive_holds(lib, (dir / "a/a_rather_long_file_name.o").string()));
  EXPECT_FALSE(archive_holds(lib, (dir / "b/util.o").string()));  // same name, other object
}

TEST_F(Archive, ThinArchivesByPath) {
  sh("cd " + dir.string() + " && ar rcT libthin.a a/util.o a/a_rather_long_file_name.o");
  auto lib = (dir / "libthin.a").string();
  auto members = read_archive(lib);
  ASSERT_EQ(members.size(), 2u);
  EXPECT_EQ(members[0].path, (dir / "a/util.o").string());
  EXPECT_TRUE(archive_holds(lib, (dir / "a/util.o").string()));
  EXPECT_TRUE(archive_holds(lib, (dir / "a/a_rather_long_file_name.o").string()));
  EXPECT_FALSE(archive_holds(lib, (dir / "b/util.o").string()));
}

TEST_F(Archive, CutShortArchiveNamesItself) {
  sh("cd " + (dir / "a").string() + " && ar rc liba.a util.o && head -c 200 liba.a > cut.a");
  try {
    read_archive((dir / "a/cut.a").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    // GNU ar puts its symbol table first: the cut falls inside util.o.
    EXPECT_NE(std::string(e.what()).find("cut.a: member 'util.o/' at "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is cut short"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_archive((dir / "a/util.c").string()), Error);
}

}  // namespace
}  // namespace suture::build::wrapper
