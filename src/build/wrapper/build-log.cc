#include "build/wrapper/build-log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include <nlohmann/json.hpp>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

// File names are bytes, not always UTF-8: replace what is not, rather than fail
// a build over a log line.
std::string dump_line(const nlohmann::ordered_json& object) {
  return object.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace

std::string to_json_line(const CompileRecord& r) {
  nlohmann::ordered_json j = {
      {"cwd", r.cwd},          {"compiler", r.compiler}, {"launcher", r.launcher}, {"args", r.args},
      {"command", r.command},  {"added", r.added},       {"source", r.source},     {"object", r.object},
      {"language", r.language}, {"split", r.split},      {"time", r.time},     {"env", r.env},
  };
  j["headers"] = r.headers ? nlohmann::ordered_json(*r.headers) : nlohmann::ordered_json(nullptr);
  return dump_line(j);
}

std::string to_json_line(const LinkRecord& r) {
  nlohmann::ordered_json j = {
      {"link", true},         {"cwd", r.cwd},         {"compiler", r.compiler},   {"launcher", r.launcher},
      {"args", r.args},       {"command", r.command}, {"output", r.output},       {"inputs", r.inputs},
      {"libraries", r.libraries}, {"time", r.time},
  };
  return dump_line(j);
}

void append_lines(const std::string& log, const std::vector<std::string>& lines) {
  int fd = open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) fail("{}: cannot append: {}", log, errno_text(errno));
  for (const auto& line : lines) {
    ssize_t written;
    do {
      written = write(fd, line.data(), line.size());
    } while (written < 0 && errno == EINTR);
    if (written != static_cast<ssize_t>(line.size())) {
      int err = written < 0 ? errno : ENOSPC;
      close(fd);
      fail("{}: cannot append: {}", log, errno_text(err));
    }
  }
  if (close(fd) != 0) fail("{}: cannot append: {}", log, errno_text(errno));
}

double now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace suture::build::wrapper
