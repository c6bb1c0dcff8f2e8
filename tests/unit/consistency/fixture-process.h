// Runs tests/unit/consistency/fixture.cc as a child and talks to it by lines.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/remote-addr.h"

namespace suture::consistency::testing {

class FixtureProcess {
 public:
  // Starts the fixture with `args` and reads its description up to "ready".
  explicit FixtureProcess(std::vector<std::string> args = {});
  FixtureProcess(const FixtureProcess&) = delete;
  ~FixtureProcess();  // kills it

  pid_t pid() const { return pid_; }
  // A function of the fixture by name ("busy"), as printed by the fixture.
  RemoteRange function(const std::string& name) const;
  // A thread by name ("parked-0", "deep", "lingerer", "main").
  pid_t thread(const std::string& name) const;
  const std::map<std::string, pid_t>& threads() const { return threads_; }

  void send(const std::string& line);
  // The next line of output; throws after `timeout`.
  std::string read_line(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads lines until one equals `line`.
  void expect(const std::string& line, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // "ping" -> "pong": the process runs and answers.
  bool responds(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Every thread of the process, from /proc/PID/task.
  std::vector<pid_t> tasks() const;
  // /proc/PID/status TracerPid of one thread.
  pid_t tracer_of(pid_t tid) const;

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string buffer_;
  std::map<std::string, RemoteRange> functions_;
  std::map<std::string, pid_t> threads_;
};

}  // namespace suture::consistency::testing
