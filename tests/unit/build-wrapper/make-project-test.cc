// Real builds through suture-cc: a small make project (compile lines without -o,
// a C++ driver link, a compile-and-link command, a recursive make with its own
// flags) built by each route a project can be made to use the wrapper, and
// judged by the log, the objects' sections, and what the programs print.
#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Result {
  int status = -1;
  std::string output;  // stdout and stderr
};

Result sh(const std::string& command) {
  Result r;
  FILE* pipe = popen(("(" + command + ") 2>&1").c_str(), "r");
  if (!pipe) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  int status = pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The section names of an ELF64 file, read with nothing but <elf.h>.
std::set<std::string> section_names(const fs::path& path) {
  auto bytes = read_text(path);
  std::set<std::string> names;
  if (bytes.size() < sizeof(Elf64_Ehdr) || bytes.compare(0, 4, ELFMAG) != 0) return names;
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  auto header = [&](size_t i) {
    Elf64_Shdr sh{};
    size_t at = eh.e_shoff + i * sizeof(Elf64_Shdr);
    if (at + sizeof sh <= bytes.size()) std::memcpy(&sh, bytes.data() + at, sizeof sh);
    return sh;
  };
  auto strings = header(eh.e_shstrndx);
  for (size_t i = 0; i < eh.e_shnum; ++i) {
    auto at = strings.sh_offset + header(i).sh_name;
    if (at < bytes.size()) names.insert(bytes.c_str() + at);
  }
  return names;
}

bool has_section_starting(const std::set<std::string>& names, const std::string& prefix) {
  for (const auto& n : names)
    if (n.starts_with(prefix)) return true;
  return false;
}

class MakeProject : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("suture-make-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root);
    fs::create_directories(root);
    log = root / "build.log";
    shims = root / "shims";
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(root);
  }

  fs::path copy_fixture(const std::string& name, const std::string& as) {
    fs::copy(fs::path(FIXTURES_DIR) / name, root / as, fs::copy_options::recursive);
    return root / as;
  }

  void make_shims() {
    auto r = sh(std::string(SUTURE_CC) + " --make-shims " + shims.string());
    ASSERT_EQ(r.status, 0) << r.output;
  }
  std::string shim_path() const { return "PATH=" + shims.string() + ":$PATH"; }
  std::string log_env() const { return "SUTURE_BUILD_LOG=" + log.string(); }

  std::vector<json> records() const {
    std::vector<json> out;
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) out.push_back(json::parse(line));
    return out;
  }

  // A plain build of the project, to compare the wrapped one with.
  fs::path plain_build() {
    auto dir = copy_fixture("project", "plain");
    auto r = sh("make -s -C " + dir.string());
    EXPECT_EQ(r.status, 0) << r.output;
    return dir;
  }

  // Everything the log of one wrapped build of the project must say.
  void check_project(const fs::path& dir, const fs::path& plain, const std::vector<json>& log_records) {
    std::map<std::string, json> compiles;  // by source
    std::map<std::string, json> links;     // by output
    for (const auto& r : log_records) {
      if (r.contains("link")) links[r["output"]] = r;
      else compiles[r["source"]] = r;
    }
    auto src = [&](const std::string& name) { return (dir / name).string(); };

    ASSERT_EQ(compiles.size(), 6u) << json(log_records).dump(1);
    for (auto name : {"main.c", "src/mathx.c", "shapes.cc", "sub/scale.c", "tool.c", "helper.c"})
      ASSERT_TRUE(compiles.count(src(name))) << name;
    for (const auto& [source, r] : compiles) {
      EXPECT_TRUE(fs::path(r["object"].get<std::string>()).is_absolute());
      EXPECT_TRUE(fs::exists(r["object"].get<std::string>())) << r["object"];
      EXPECT_TRUE(fs::path(r["cwd"].get<std::string>()).is_absolute());
    }

    // Compile lines without -o: the object is BASENAME.o in the directory make ran in.
    auto& main_r = compiles[src("main.c")];
    EXPECT_EQ(main_r["object"], src("main.o"));
    EXPECT_EQ(main_r["args"], json({"-O2", "-Wall", "-MMD", "-MP", "-c", "main.c"}));
    EXPECT_EQ(main_r["added"], json({"-ffunction-sections", "-fdata-sections"}));
    EXPECT_EQ(main_r["language"], "c");
    EXPECT_EQ(compiles[src("src/mathx.c")]["object"], src("mathx.o"));
    EXPECT_EQ(compiles[src("shapes.cc")]["object"], src("shapes.o"));
    EXPECT_EQ(compiles[src("shapes.cc")]["language"], "c++");
    EXPECT_TRUE(compiles[src("shapes.cc")]["compiler"].get<std::string>().ends_with("++"));

    // The vendored library: its own directory, its own flags, nothing doubled.
    auto& sub = compiles[src("sub/scale.c")];
    EXPECT_EQ(sub["cwd"], src("sub"));
    EXPECT_EQ(sub["object"], src("sub/scale.o"));
    EXPECT_EQ(sub["args"], json({"-O1", "-DSUB_SCALE=3", "-ffunction-sections", "-c", "scale.c"}));
    EXPECT_EQ(sub["added"], json({"-fdata-sections"}));
    auto command = sub["command"].get<std::vector<std::string>>();
    EXPECT_EQ(std::count(command.begin(), command.end(), "-ffunction-sections"), 1);

    // Compiled and linked in one command: objects kept, and the link names them.
    auto& tool = compiles[src("tool.c")];
    auto& helper = compiles[src("helper.c")];
    EXPECT_TRUE(tool["split"].get<bool>());
    ASSERT_TRUE(links.count(src("tool")));
    EXPECT_EQ(links[src("tool")]["inputs"], json({tool["object"], helper["object"]}));

    // The C++ driver links calc from the objects and the library.
    ASSERT_TRUE(links.count(src("calc")));
    auto& calc = links[src("calc")];
    EXPECT_TRUE(calc["compiler"].get<std::string>().ends_with("++"));
    EXPECT_EQ(calc["inputs"], json({src("main.o"), src("mathx.o"), src("shapes.o"), src("sub/libsub.a")}));

    // What each compile read, for suture build to follow header changes: from
    // the project's own -MMD file (which leaves out system headers), or from
    // the side file the wrapper adds to compiles that write none.
    auto headers = [&](const json& r) {
      EXPECT_TRUE(r["headers"].is_array()) << r.dump();
      return r["headers"].is_array() ? r["headers"].get<std::vector<std::string>>() : std::vector<std::string>{};
    };
    EXPECT_EQ(headers(main_r), std::vector<std::string>{src("src/mathx.h")});
    EXPECT_EQ(headers(compiles[src("src/mathx.c")]), std::vector<std::string>{src("src/mathx.h")});
    // scale.c includes nothing; its -MD was the wrapper's, which also names gcc's implicit stdc-predef.h.
    for (const auto& h : headers(sub)) EXPECT_TRUE(h.starts_with("/usr/")) << h;
    auto shapes_headers = headers(compiles[src("shapes.cc")]);
    EXPECT_FALSE(shapes_headers.empty());  // no -MD of its own: the side file names the system headers too
    EXPECT_TRUE(headers(tool).empty());
    auto side_dir = log.parent_path() / "suture-objects" / "deps";
    EXPECT_TRUE(!fs::exists(side_dir) || fs::is_empty(side_dir)) << "side dependency files are left behind";
    // ...and what it ran with, to run it again: the environment without the log's variables.
    auto env = sub["env"].get<std::vector<std::string>>();
    EXPECT_TRUE(std::any_of(env.begin(), env.end(), [](const std::string& e) { return e.starts_with("PATH="); }));
    EXPECT_FALSE(std::any_of(env.begin(), env.end(),
                             [](const std::string& e) { return e.starts_with("SUTURE_BUILD_LOG="); }));

    // One section per function and per variable.
    auto main_sections = section_names(dir / "main.o");
    EXPECT_TRUE(main_sections.count(".text.startup.main") || main_sections.count(".text.main"));
    auto mathx = section_names(dir / "mathx.o");
    EXPECT_TRUE(mathx.count(".text.add_numbers"));
    EXPECT_TRUE(mathx.count(".text.mul_numbers"));
    EXPECT_TRUE(mathx.count(".data.mathx_table"));
    EXPECT_TRUE(mathx.count(".bss.mathx_calls"));
    auto shapes = section_names(dir / "shapes.o");
    EXPECT_TRUE(shapes.count(".text.shape_area"));
    EXPECT_TRUE(has_section_starting(shapes, ".text._ZN6shapes5total"));
    auto scale = section_names(dir / "sub/scale.o");
    EXPECT_TRUE(scale.count(".text.sub_scale"));
    EXPECT_TRUE(scale.count(".bss.sub_calls"));
    EXPECT_TRUE(section_names(helper["object"].get<std::string>()).count(".text.helper_twice"));
    // ...which the plain build does not have: the wrapper made them.
    EXPECT_FALSE(section_names(plain / "mathx.o").count(".text.add_numbers"));

    // The programs behave as built without the wrapper.
    for (auto program : {"calc", "tool"}) {
      auto wrapped = sh((dir / program).string());
      auto original = sh((plain / program).string());
      EXPECT_EQ(wrapped.status, 0);
      EXPECT_EQ(wrapped.output, original.output) << program;
      EXPECT_FALSE(wrapped.output.empty());
    }
    // And the dependency files the project relies on are the same.
    for (auto d : {"main.d", "mathx.d", "tool.d"}) {
      EXPECT_TRUE(fs::exists(dir / d)) << d;
      EXPECT_EQ(read_text(dir / d), read_text(plain / d)) << d;
    }
  }

  fs::path root, log, shims;
};

TEST_F(MakeProject, ThroughCcAndCxxVariables) {
  auto plain = plain_build();
  auto dir = copy_fixture("project", "wrapped");
  auto r = sh("cd " + dir.string() + " && " + log_env() + " make -s CC='" SUTURE_CC " gcc' CXX='" SUTURE_CC " g++'");
  ASSERT_EQ(r.status, 0) << r.output;
  check_project(dir, plain, records());
  for (const auto& rec : records()) EXPECT_TRUE(rec["launcher"].empty());
}

TEST_F(MakeProject, ThroughTheEnvironment) {
  auto plain = plain_build();
  auto dir = copy_fixture("project", "wrapped");
  std::string cxx = (fs::path(SUTURE_CC).parent_path() / "suture-c++").string();
  auto r = sh("cd " + dir.string() + " && " + log_env() + " SUTURE_REAL_CC=gcc SUTURE_REAL_CXX=g++ make -s CC=" +
              SUTURE_CC + " CXX=" + cxx);
  ASSERT_EQ(r.status, 0) << r.output;
  check_project(dir, plain, records());
}

TEST_F(MakeProject, ThroughLinksFirstOnPath) {
  auto plain = plain_build();
  make_shims();
  auto dir = copy_fixture("project", "wrapped");
  // The Makefile names no compiler: make's defaults, cc and g++, found on PATH.
  auto r = sh("cd " + dir.string() + " && " + shim_path() + " " + log_env() + " make -s");
  ASSERT_EQ(r.status, 0) << r.output;
  check_project(dir, plain, records());
  for (const auto& rec : records()) EXPECT_FALSE(rec["compiler"].get<std::string>().starts_with(shims.string()));
}

TEST_F(MakeProject, ParallelMakeKeepsTheLogWhole) {
  make_shims();
  auto dir = copy_fixture("project", "wrapped");
  constexpr int builds = 3;
  for (int i = 0; i < builds; ++i) {
    auto r = sh("cd " + dir.string() + " && " + shim_path() + " " + log_env() + " sh -c 'make -s clean && make -s -j2'");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  auto text = read_text(log);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), builds * 8);  // 6 objects + 2 links each
  std::map<std::string, int> per_object;
  for (const auto& rec : records()) {  // parses every line
    if (!rec.contains("link")) ++per_object[rec["object"]];
  }
  EXPECT_EQ(per_object.size(), 6u);
  for (const auto& [object, count] : per_object) EXPECT_EQ(count, builds) << object;
}

// PATH lookups cannot catch a compiler named by absolute path; overriding CC can.
TEST_F(MakeProject, AbsoluteCompilerPathOnlyThroughCcOverride) {
  make_shims();
  auto dir = copy_fixture("absolute", "absolute");
  auto r = sh("cd " + dir.string() + " && " + shim_path() + " " + log_env() + " make -s");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(records().empty()) << "the shims saw /usr/bin/gcc: update the docs of real-compiler.h";
  EXPECT_FALSE(section_names(dir / "hello.o").count(".text.greeting"));

  r = sh("cd " + dir.string() + " && rm -f hello hello.o && " + log_env() + " make -s CC='" SUTURE_CC " /usr/bin/gcc'");
  ASSERT_EQ(r.status, 0) << r.output;
  auto recs = records();
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[0]["object"], (dir / "hello.o").string());
  EXPECT_EQ(recs[0]["compiler"], "/usr/bin/gcc");
  EXPECT_EQ(recs[1]["output"], (dir / "hello").string());
  EXPECT_TRUE(section_names(dir / "hello.o").count(".text.greeting"));
  EXPECT_EQ(sh((dir / "hello").string()).output, "hello 42\n");
}

// CC = ccache gcc: the wrapper stays in front of ccache, so its flags are part
// of the cache key and a cache hit is recorded like a compile.
TEST_F(MakeProject, CcacheInFrontOfTheCompiler) {
  if (sh("command -v ccache").status != 0) GTEST_SKIP() << "ccache not installed";
  make_shims();
  auto dir = copy_fixture("launcher", "launcher");
  std::string env = shim_path() + " " + log_env() + " CCACHE_DIR=" + (root / "ccache").string();
  for (int round = 0; round < 2; ++round) {  // a miss, then a hit
    auto r = sh("cd " + dir.string() + " && rm -f hello hello.o && " + env + " make -s");
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(section_names(dir / "hello.o").count(".text.greeting")) << round;
  }
  auto stats = sh("CCACHE_DIR=" + (root / "ccache").string() + " ccache -s");
  EXPECT_NE(stats.output.find("Hits:"), std::string::npos) << stats.output;

  auto r = sh("cd " + dir.string() + " && rm -f hello hello.o && " + log_env() + " CCACHE_DIR=" +
              (root / "ccache").string() + " make -s CC='" SUTURE_CC " ccache gcc'");
  ASSERT_EQ(r.status, 0) << r.output;

  auto recs = records();
  ASSERT_EQ(recs.size(), 6u);
  for (const auto& rec : recs) {
    EXPECT_EQ(rec["compiler"], "/usr/bin/gcc");
    ASSERT_EQ(rec["launcher"].size(), 1u);
    EXPECT_TRUE(rec["launcher"][0].get<std::string>().ends_with("/ccache"));
    if (!rec.contains("link")) {
      EXPECT_EQ(rec["object"], (dir / "hello.o").string());
    }
  }
  EXPECT_EQ(sh((dir / "hello").string()).output, "hello 42\n");
}

// CMake finds its compiler once, by PATH or from CC/CXX, and then calls it by
// absolute path: both routes must hold through configure and build.
TEST_F(MakeProject, CMakeProject) {
  make_shims();
  auto src = copy_fixture("cmake", "src");
  for (auto route : {"shims", "cc"}) {
    fs::path build = root / (std::string("build-") + route);
    fs::remove(log);
    std::string env = route == std::string("shims")
                          ? shim_path() + " " + log_env()
                          : log_env() + " CC='" SUTURE_CC " gcc' CXX='" SUTURE_CC " g++'";
    auto r = sh(env + " cmake -S " + src.string() + " -B " + build.string() + " -G Ninja && " + env + " ninja -C " +
                build.string());
    ASSERT_EQ(r.status, 0) << route << ": " << r.output;
    std::map<std::string, json> by_path;
    for (const auto& rec : records()) by_path[rec.contains("link") ? rec["output"] : rec["object"]] = rec;
    auto counter_o = (build / "CMakeFiles/counter.dir/counter.c.o").string();
    auto app_o = (build / "CMakeFiles/app.dir/app.cc.o").string();
    ASSERT_TRUE(by_path.count(counter_o)) << route;
    ASSERT_TRUE(by_path.count(app_o)) << route;
    EXPECT_EQ(by_path[counter_o]["source"], (src / "counter.c").string());
    EXPECT_EQ(by_path[app_o]["language"], "c++");
    ASSERT_TRUE(by_path.count((build / "libcounter.so").string())) << route;
    EXPECT_EQ(by_path[(build / "libcounter.so").string()]["inputs"], json({counter_o}));
    ASSERT_TRUE(by_path.count((build / "app").string())) << route;
    EXPECT_TRUE(section_names(counter_o).count(".text.counter_next"));
    EXPECT_TRUE(section_names(counter_o).count(".bss.count"));
    EXPECT_EQ(sh((build / "app").string()).output, "count 2\n");
  }
}

// The side -MD -MF the wrapper adds to learn a compile's headers changes no
// byte of the object, and a compile that names its own dependency file keeps
// it (read, not replaced by a second -MF).
TEST_F(MakeProject, HeadersRecordedWithoutChangingTheObject) {
  std::ofstream(root / "a.h") << "#define A_STEP 3\n";
  std::ofstream(root / "a.c") << "#include \"a.h\"\nint a_step(int x) { return x + A_STEP; }\n";
  std::string cd = "cd " + root.string() + " && ";
  auto r = sh(cd + log_env() + " " SUTURE_CC " gcc -O2 -g -c a.c -o logged.o && " SUTURE_CC
              " gcc -O2 -g -c a.c -o unlogged.o");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_text(root / "logged.o"), read_text(root / "unlogged.o"));
  auto recs = records();
  ASSERT_EQ(recs.size(), 1u);
  auto read = recs[0]["headers"].get<std::vector<std::string>>();  // a.h and gcc's implicit stdc-predef.h
  EXPECT_EQ(std::count(read.begin(), read.end(), (root / "a.h").string()), 1) << recs[0]["headers"];
  for (const auto& h : read) EXPECT_TRUE(h == (root / "a.h").string() || h.starts_with("/usr/")) << h;
  auto command = recs[0]["command"].get<std::vector<std::string>>();
  EXPECT_EQ(std::count(command.begin(), command.end(), "-MD"), 1);
  EXPECT_FALSE(fs::exists(root / "logged.d"));  // the side file went to the wrapper's directory, and is gone

  fs::remove(log);
  r = sh(cd + log_env() + " " SUTURE_CC " gcc -O2 -MD -MF own.dep -c a.c -o own.o");
  ASSERT_EQ(r.status, 0) << r.output;
  recs = records();
  ASSERT_EQ(recs.size(), 1u);
  read = recs[0]["headers"].get<std::vector<std::string>>();
  EXPECT_EQ(std::count(read.begin(), read.end(), (root / "a.h").string()), 1) << recs[0]["headers"];
  command = recs[0]["command"].get<std::vector<std::string>>();
  EXPECT_EQ(std::count(command.begin(), command.end(), "-MF"), 1);
  EXPECT_NE(read_text(root / "own.dep").find("a.h"), std::string::npos);
}

TEST_F(MakeProject, CompilerStatusAndStderrPassThrough) {
  std::ofstream(root / "bad.c") << "int f(void) { return missing; }\n";
  std::string cd = "cd " + root.string() + " && ";
  auto direct = sh(cd + "gcc -c bad.c");
  auto wrapped = sh(cd + log_env() + " " SUTURE_CC " gcc -c bad.c");
  EXPECT_NE(direct.status, 0);
  EXPECT_EQ(wrapped.status, direct.status);
  EXPECT_EQ(wrapped.output, direct.output);
  EXPECT_TRUE(records().empty());

  // Not compiles: run as they are, nothing recorded.
  auto version = sh(cd + log_env() + " " SUTURE_CC " gcc --version");
  EXPECT_EQ(version.output, sh("gcc --version").output);
  auto preprocessed = sh(cd + "echo 'int x = FOO;' | " + log_env() + " " SUTURE_CC " gcc -DFOO=7 -E -P -x c -");
  EXPECT_EQ(preprocessed.status, 0);
  EXPECT_NE(preprocessed.output.find("int x = 7;"), std::string::npos) << preprocessed.output;
  EXPECT_TRUE(records().empty());

  // A relative log would be a different file in every directory of the build.
  auto relative = sh(cd + "SUTURE_BUILD_LOG=build.log " SUTURE_CC " gcc -c bad.c");
  EXPECT_NE(relative.status, 0);
  EXPECT_NE(relative.output.find("SUTURE_BUILD_LOG=build.log: must be an absolute path"), std::string::npos);
}

}  // namespace
