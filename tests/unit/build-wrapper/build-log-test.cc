#include "build/wrapper/build-log.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

TEST(BuildLog, CompileRecordIsOneLineOfJson) {
  CompileRecord r{"/w", "/usr/bin/gcc", {}, {"-c", "x.c"}, {"/usr/bin/gcc", "-c", "x.c", "-fdata-sections"},
                  {"-fdata-sections"}, "/w/x.c", "/w/x.o", "c", false, 1700000000.25};
  auto line = to_json_line(r);
  ASSERT_TRUE(line.ends_with("\n"));
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["cwd"], "/w");
  EXPECT_EQ(j["compiler"], "/usr/bin/gcc");
  EXPECT_EQ(j["args"], nlohmann::json({"-c", "x.c"}));
  EXPECT_EQ(j["source"], "/w/x.c");
  EXPECT_EQ(j["object"], "/w/x.o");
  EXPECT_EQ(j["language"], "c");
  EXPECT_EQ(j["time"], 1700000000.25);
  EXPECT_FALSE(j.contains("link"));
  // Keys in the order a reader expects, not alphabetical.
  EXPECT_TRUE(line.starts_with(R"({"cwd":"/w","compiler":)")) << line;
}

TEST(BuildLog, LinkRecord) {
  LinkRecord r{"/w", "/usr/bin/g++", {}, {"a.o", "-o", "p"}, {"/usr/bin/g++", "a.o", "-o", "p"}, "/w/p",
               {"/w/a.o"}, {"-lm"}, 1.0};
  auto j = nlohmann::json::parse(to_json_line(r));
  EXPECT_EQ(j["link"], true);
  EXPECT_EQ(j["output"], "/w/p");
  EXPECT_EQ(j["inputs"], nlohmann::json({"/w/a.o"}));
  EXPECT_EQ(j["libraries"], nlohmann::json({"-lm"}));
}

TEST(BuildLog, FileNamesThatAreNotUtf8DoNotFailTheBuild) {
  CompileRecord r;
  r.source = "/w/\xff.c";
  EXPECT_NO_THROW(nlohmann::json::parse(to_json_line(r)));
}

TEST(BuildLog, UnwritableLogIsAnErrorNamingIt) {
  try {
    append_lines("/nonexistent-dir/log", {"x\n"});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("/nonexistent-dir/log: cannot append")) << e.what();
  }
}

// What make -j does: many wrappers appending at once. Long lines (beyond
// PIPE_BUF) from several processes must still come out whole.
TEST(BuildLog, ConcurrentAppendsDoNotInterleave) {
  auto log = fs::temp_directory_path() / ("suture-log-" + std::to_string(getpid()));
  fs::remove(log);
  constexpr int writers = 6, lines_each = 150;
  std::vector<pid_t> children;
  for (int w = 0; w < writers; ++w) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      for (int i = 0; i < lines_each; ++i) {
        CompileRecord r;
        r.source = "/src/" + std::to_string(w) + "/" + std::to_string(i) + ".c";
        r.args.assign(200, std::string(40, static_cast<char>('a' + w)));  // ~9 KB a line
        append_lines(log.string(), {to_json_line(r)});
      }
      _exit(0);
    }
    children.push_back(pid);
  }
  for (auto pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::ifstream in(log);
  std::set<std::string> sources;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);  // throws on a torn line
    auto source = j["source"].get<std::string>();
    char writer = source[5];
    for (const auto& arg : j["args"]) EXPECT_EQ(arg.get<std::string>()[0], 'a' + (writer - '0'));
    sources.insert(source);
  }
  EXPECT_EQ(sources.size(), static_cast<size_t>(writers * lines_each));
  fs::remove(log);
}

}  // namespace
}  // namespace suture::build::wrapper
