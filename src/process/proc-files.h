// Small readers of /proc/PID files shared by the process-control stage. Every
// function tolerates the process or thread vanishing while it reads: that is the
// normal case for a live target, not an error.
#pragma once

#include <sys/types.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/remote-addr.h"

namespace suture::process {

// The whole file, or nullopt if it cannot be opened or read.
std::optional<std::string> read_proc_file(const std::string& path);

// Thread ids listed in /proc/PID/task (empty when the process is gone).
std::vector<pid_t> list_threads(pid_t pid);

// The state letter of /proc/PID/task/TID/stat ('R', 'S', 'D', 'T', 't', 'Z', ...),
// or '\0' when the thread is gone.
char thread_state(pid_t pid, pid_t tid);
// Whether a state letter from thread_state() is a thread that has ended: gone,
// a zombie not reaped yet, or being freed.
constexpr bool has_ended(char state) { return state == '\0' || state == 'Z' || state == 'X'; }

// CPU time the thread has used (utime + stime, in clock ticks); 0 when gone.
uint64_t thread_cpu_ticks(pid_t pid, pid_t tid);

// /proc/PID/task/TID/schedstat: what the scheduler has counted for a thread.
struct SchedStat {
  uint64_t on_cpu_ns = 0;   // time spent running
  uint64_t waiting_ns = 0;  // time spent runnable, waiting for a CPU
  uint64_t timeslices = 0;  // times put on a CPU
};
std::optional<SchedStat> parse_sched_stat(std::string_view text);
// nullopt when the thread is gone or the kernel does not offer the file.
std::optional<SchedStat> sched_stat(pid_t pid, pid_t tid);

// How many times the scheduler has put the thread on a CPU (the third field
// of schedstat). A thread seen blocked, and later blocked again with the same
// count, has not run between the two looks.
std::optional<uint64_t> times_scheduled(pid_t pid, pid_t tid);

// One thread's schedstat kept open, for a reader that reads it at every stop
// of the thread: a read is then one pread(), a quarter of open-read-close.
class SchedStatFile {
 public:
  SchedStatFile(pid_t pid, pid_t tid) : pid_(pid), tid_(tid) {}
  SchedStatFile(SchedStatFile&& other) noexcept;
  SchedStatFile& operator=(SchedStatFile&& other) noexcept;
  SchedStatFile(const SchedStatFile&) = delete;
  SchedStatFile& operator=(const SchedStatFile&) = delete;
  ~SchedStatFile();

  // Opened on the first read; nullopt once the thread is gone.
  std::optional<SchedStat> read();

 private:
  pid_t pid_;
  pid_t tid_;
  int fd_ = -1;
};

// /proc/PID/task/TID/comm without the newline; empty when gone.
std::string thread_name(pid_t pid, pid_t tid);

// A "Name:\tvalue" field of /proc/PID/task/TID/status; nullopt when absent.
std::optional<std::string> status_field(pid_t pid, pid_t tid, const std::string& name);

// A thread blocked in the kernel, from /proc/PID/task/TID/syscall ("NR arg1..arg6
// sp pc", or "-1 sp pc" outside a system call): the call's number and
// arguments, its user sp and pc, and the text read (to tell whether it stayed
// blocked). nullopt while it runs, or once it is gone.
struct KernelView {
  long number = -1;
  std::array<uint64_t, 6> args{};  // zeros outside a system call
  std::string text;
  RemoteAddr sp, pc;
};
std::optional<KernelView> blocked_view(pid_t pid, pid_t tid);

// True while some thread of the process is neither a zombie nor dead. A process
// whose main thread called pthread_exit() is alive with a zombie leader.
bool process_alive(pid_t pid);

}  // namespace suture::process
