#include "fixture-process.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace suture::consistency::testing {

FixtureProcess::FixtureProcess(std::vector<std::string> args) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> argv_text{SUTURE_CONSISTENCY_FIXTURE};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  to_child_ = in[1];
  from_child_ = out[0];

  for (;;) {
    std::string line = read_line();
    if (line == "ready") break;
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    if (kind == "fn") {
      std::string address;
      uint64_t size = 0;
      words >> address >> size;
      functions_[name] = RemoteRange{RemoteAddr(std::stoull(address, nullptr, 16)), size};
    } else if (kind == "thread") {
      pid_t tid = 0;
      words >> tid;
      threads_[name] = tid;
    }
  }
}

FixtureProcess::~FixtureProcess() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (to_child_ >= 0) close(to_child_);
  if (from_child_ >= 0) close(from_child_);
}

RemoteRange FixtureProcess::function(const std::string& name) const {
  auto it = functions_.find(name);
  if (it == functions_.end()) throw std::runtime_error("fixture printed no function " + name);
  return it->second;
}

pid_t FixtureProcess::thread(const std::string& name) const {
  auto it = threads_.find(name);
  if (it == threads_.end()) throw std::runtime_error("fixture printed no thread " + name);
  return it->second;
}

void FixtureProcess::send(const std::string& line) {
  std::string text = line + "\n";
  if (write(to_child_, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    throw std::runtime_error("cannot write to the fixture");
}

std::string FixtureProcess::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    size_t eol = buffer_.find('\n');
    if (eol != std::string::npos) {
      std::string line = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw std::runtime_error("the fixture did not answer in time");
    pollfd p{from_child_, POLLIN, 0};
    int ready = poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char chunk[4096];
    ssize_t n = read(from_child_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw std::runtime_error("the fixture closed its output");
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

void FixtureProcess::expect(const std::string& line, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (read_line(std::max(left, std::chrono::milliseconds(1))) == line) return;
  }
}

bool FixtureProcess::responds(std::chrono::milliseconds timeout) {
  try {
    send("ping");
    expect("pong", timeout);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<pid_t> FixtureProcess::tasks() const {
  std::vector<pid_t> tids;
  std::string path = "/proc/" + std::to_string(pid_) + "/task";
  DIR* dir = opendir(path.c_str());
  if (!dir) return tids;
  while (dirent* entry = readdir(dir))
    if (entry->d_name[0] != '.') tids.push_back(static_cast<pid_t>(std::atoi(entry->d_name)));
  closedir(dir);
  return tids;
}

pid_t FixtureProcess::tracer_of(pid_t tid) const {
  std::ifstream status("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(tid) + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("TracerPid:", 0) == 0) return static_cast<pid_t>(std::atoi(line.c_str() + 10));
  return -1;
}

}  // namespace suture::consistency::testing
