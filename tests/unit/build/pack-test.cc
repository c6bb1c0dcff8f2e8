// pack_requests naming the function to replace, against a C++ program this
// machine's compiler builds: a name shared with gcc's cold part of the function.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "build/pack.h"
#include "common/error.h"
#include "common/read-file.h"

namespace suture::build {
namespace {

namespace fs = std::filesystem;

class Pack : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("suture-pack-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void compile(const std::string& name, const std::string& source, const std::string& flags) {
    std::ofstream(dir_ / (name + ".cc")) << source;
    std::string command = std::string(CXX) + " -O2 " + flags + " '" + (dir_ / (name + ".cc")).string() + "' -o '" +
                          (dir_ / name).string() + "'";
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
  }

  fs::path dir_;
};

// calc::safe throws on its unlikely path, which gcc moves to calc::safe.cold;
// both demangle to calc::safe, but only one is a function's entry.
TEST_F(Pack, AQualifiedNameMeansTheFunctionNotItsColdPart) {
  compile("calc",
          "#include <cstdio>\n#include <stdexcept>\n"
          "namespace calc {\n__attribute__((noinline)) int safe(int a, int b) {\n"
          "  if (b == 0) throw std::invalid_argument(\"division by zero\");\n  return a / b;\n}\n}\n"
          "int main(int argc, char**) { std::printf(\"%d\\n\", calc::safe(10, argc)); }\n",
          "-Wl,--build-id");
  std::string nm = "nm '" + (dir_ / "calc").string() + "' | grep -q '_ZN4calc4safeEii.cold'";
  if (std::system(nm.c_str()) != 0) GTEST_SKIP() << "this compiler made no cold part of calc::safe";
  compile("fix.o", "extern \"C\" int safe_fixed(int a, int b) { return b == 0 ? 0 : a / b; }\n", "-fPIC -c");
  PackOptions options;
  options.target = (dir_ / "calc").string();
  options.object = (dir_ / "fix.o").string();
  for (const char* spelling : {"calc::safe", "calc::safe(int, int)", "_ZN4calc4safeEii"}) {
    PackResult packed;
    try {
      packed = pack_requests(options, read_whole_file(options.object), {{spelling, "safe_fixed"}}, {});
    } catch (const Error& e) {
      FAIL() << spelling << ": " << e.what();
    }
    ASSERT_EQ(packed.patch.replacements.size(), 1u);
    EXPECT_EQ(packed.patch.replacements[0].symbol, "_ZN4calc4safeEii") << spelling;
  }
}

}  // namespace
}  // namespace suture::build
