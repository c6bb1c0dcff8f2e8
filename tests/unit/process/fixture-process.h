// Runs a fixture program as a child with its stdin and stdout on pipes, so a
// test can send it commands and judge it by what it prints.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "process/proc-files.h"

namespace suture::process::testing {

// The thread of `pid` with this name (the fixture names its threads); 0 if none.
inline pid_t thread_named(pid_t pid, const std::string& name) {
  for (pid_t tid : list_threads(pid))
    if (thread_name(pid, tid) == name) return tid;
  return 0;
}

class FixtureProcess {
 public:
  explicit FixtureProcess(const std::string& path, std::vector<std::string> args = {}) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ < 0) throw std::runtime_error("fork");
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(path.c_str()));
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(path.c_str(), argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
    ready_ = expect("ready", std::chrono::seconds(20));
    std::istringstream words(ready_);
    std::string word;
    while (words >> word) {
      auto eq = word.find('=');
      if (eq != std::string::npos) values_[word.substr(0, eq)] = std::strtoull(word.c_str() + eq + 1, nullptr, 0);
    }
  }

  FixtureProcess(const FixtureProcess&) = delete;

  ~FixtureProcess() {
    if (!reaped_) {
      kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
    }
    close(to_child_);
    close(from_child_);
  }

  pid_t pid() const { return pid_; }
  uint64_t value(const std::string& key) const { return values_.at(key); }

  void send(const std::string& line) {
    std::string text = line + "\n";
    if (write(to_child_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      throw std::runtime_error("write to fixture");
  }

  std::optional<std::string> read_line(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        lines_.push_back(line);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{from_child_, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(left.count()));
      if (r <= 0) continue;
      char chunk[4096];
      ssize_t n = read(from_child_, chunk, sizeof chunk);
      if (n <= 0) return std::nullopt;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

  // The next line starting with `prefix`; throws at the timeout.
  std::string expect(const std::string& prefix, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto line = read_line(left);
      if (!line) break;
      if (line->rfind(prefix, 0) == 0) return *line;
    }
    throw std::runtime_error("fixture did not print '" + prefix + "'; it printed:\n" + transcript());
  }

  // "status usr1=N ..." as a map.
  std::map<std::string, long> status() {
    send("status");
    std::istringstream words(expect("status "));
    std::map<std::string, long> result;
    std::string word;
    while (words >> word) {
      auto eq = word.find('=');
      if (eq != std::string::npos) result[word.substr(0, eq)] = std::strtol(word.c_str() + eq + 1, nullptr, 10);
    }
    return result;
  }

  std::string transcript() const {
    std::string text;
    for (auto& l : lines_) text += "  " + l + "\n";
    return text;
  }

  // Waits for the child after it was killed; a Tracee must be gone by then.
  int reap() {
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1, from_child_ = -1;
  bool reaped_ = false;
  std::string buffer_;
  std::string ready_;
  std::vector<std::string> lines_;
  std::map<std::string, uint64_t> values_;
};

}  // namespace suture::process::testing
