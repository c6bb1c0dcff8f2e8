#include "process/proc-files.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <charconv>
#include <sstream>
#include <utility>

#include <fmt/format.h>

namespace suture::process {

std::optional<std::string> read_proc_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

std::vector<pid_t> list_threads(pid_t pid) {
  std::vector<pid_t> tids;
  std::string path = fmt::format("/proc/{}/task", pid);
  DIR* dir = opendir(path.c_str());
  if (!dir) return tids;
  while (dirent* entry = readdir(dir)) {
    pid_t tid = 0;
    const char* name = entry->d_name;
    const char* end = name + std::char_traits<char>::length(name);
    auto [stop, ec] = std::from_chars(name, end, tid);
    if (ec == std::errc() && stop == end && tid > 0) tids.push_back(tid);
  }
  closedir(dir);
  return tids;
}

char thread_state(pid_t pid, pid_t tid) {
  auto text = read_proc_file(fmt::format("/proc/{}/task/{}/stat", pid, tid));
  if (!text) return '\0';
  // "tid (comm) S ...": comm may contain spaces and parentheses, so look for
  // the last ')'.
  size_t close_paren = text->rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= text->size()) return '\0';
  return (*text)[close_paren + 2];
}

uint64_t thread_cpu_ticks(pid_t pid, pid_t tid) {
  auto text = read_proc_file(fmt::format("/proc/{}/task/{}/stat", pid, tid));
  if (!text) return 0;
  size_t close_paren = text->rfind(')');
  if (close_paren == std::string::npos) return 0;
  // Fields after "(comm)": state is field 3, utime 14 and stime 15.
  std::istringstream in(text->substr(close_paren + 1));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int index = 3; index <= 15 && in >> field; ++index) {
    if (index == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (index == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return utime + stime;
}

std::optional<SchedStat> parse_sched_stat(std::string_view text) {
  // "time-on-cpu time-waiting timeslices\n"
  SchedStat stat;
  const char* at = text.data();
  const char* end = text.data() + text.size();
  for (uint64_t* field : {&stat.on_cpu_ns, &stat.waiting_ns, &stat.timeslices}) {
    while (at < end && *at == ' ') ++at;
    auto [next, error] = std::from_chars(at, end, *field);
    if (error != std::errc{}) return std::nullopt;
    at = next;
  }
  return stat;
}

std::optional<SchedStat> sched_stat(pid_t pid, pid_t tid) {
  auto text = read_proc_file(fmt::format("/proc/{}/task/{}/schedstat", pid, tid));
  if (!text) return std::nullopt;
  return parse_sched_stat(*text);
}

std::optional<uint64_t> times_scheduled(pid_t pid, pid_t tid) {
  auto stat = sched_stat(pid, tid);
  if (!stat) return std::nullopt;
  return stat->timeslices;
}

SchedStatFile::SchedStatFile(SchedStatFile&& other) noexcept
    : pid_(other.pid_), tid_(other.tid_), fd_(std::exchange(other.fd_, -1)) {}

SchedStatFile& SchedStatFile::operator=(SchedStatFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    pid_ = other.pid_;
    tid_ = other.tid_;
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

SchedStatFile::~SchedStatFile() {
  if (fd_ >= 0) close(fd_);
}

std::optional<SchedStat> SchedStatFile::read() {
  if (fd_ < 0) {
    fd_ = open(fmt::format("/proc/{}/task/{}/schedstat", pid_, tid_).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) return std::nullopt;
  }
  char buffer[128];
  ssize_t n;
  do n = pread(fd_, buffer, sizeof buffer, 0);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return std::nullopt;  // ESRCH once the thread is gone
  return parse_sched_stat(std::string_view(buffer, static_cast<size_t>(n)));
}

std::string thread_name(pid_t pid, pid_t tid) {
  auto text = read_proc_file(fmt::format("/proc/{}/task/{}/comm", pid, tid));
  if (!text) return {};
  if (!text->empty() && text->back() == '\n') text->pop_back();
  return *text;
}

std::optional<std::string> status_field(pid_t pid, pid_t tid, const std::string& name) {
  auto text = read_proc_file(fmt::format("/proc/{}/task/{}/status", pid, tid));
  if (!text) return std::nullopt;
  std::string key = name + ":";
  size_t pos = 0;
  while (pos < text->size()) {
    size_t end = text->find('\n', pos);
    if (end == std::string::npos) end = text->size();
    if (text->compare(pos, key.size(), key) == 0) {
      size_t value = text->find_first_not_of(" \t", pos + key.size());
      if (value == std::string::npos || value > end) return std::string();
      return text->substr(value, end - value);
    }
    pos = end + 1;
  }
  return std::nullopt;
}

bool process_alive(pid_t pid) {
  for (pid_t tid : list_threads(pid)) {
    if (!has_ended(thread_state(pid, tid))) return true;
  }
  return false;
}

std::optional<KernelView> blocked_view(pid_t pid, pid_t tid) {
  auto text = read_proc_file(fmt::format("/proc/{}/task/{}/syscall", pid, tid));
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::vector<std::string> fields;
  for (std::string f; in >> f;) fields.push_back(f);
  if (fields.size() < 3 || fields[0] == "running") return std::nullopt;
  KernelView view;
  view.number = std::strtol(fields[0].c_str(), nullptr, 10);
  if (view.number >= 0 && fields.size() == 9)
    for (size_t i = 0; i < view.args.size(); ++i) view.args[i] = std::strtoull(fields[1 + i].c_str(), nullptr, 16);
  view.text = *text;
  view.sp = RemoteAddr(std::strtoull(fields[fields.size() - 2].c_str(), nullptr, 16));
  view.pc = RemoteAddr(std::strtoull(fields.back().c_str(), nullptr, 16));
  if (view.pc.value() == 0) return std::nullopt;
  return view;
}

}  // namespace suture::process
