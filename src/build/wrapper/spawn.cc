#include "build/wrapper/spawn.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

std::vector<char*> c_strings(const std::vector<std::string>& words) {
  std::vector<char*> out;
  for (const auto& w : words) out.push_back(const_cast<char*>(w.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

void exec_command(const std::vector<std::string>& argv, const std::vector<std::string>& envp) {
  auto args = c_strings(argv);
  auto env = c_strings(envp);
  execve(args[0], args.data(), env.data());
  int err = errno;
  std::fprintf(stderr, "suture-cc: %s: cannot run: %s\n", argv[0].c_str(), errno_text(err).c_str());
  std::exit(127);
}

int run_command(const std::vector<std::string>& argv, const std::vector<std::string>& envp) {
  // Prepared before fork: the child only calls async-signal-safe functions.
  auto args = c_strings(argv);
  auto env = c_strings(envp);
  pid_t pid = fork();
  if (pid < 0) fail("suture-cc: cannot fork: {}", errno_text(errno));
  if (pid == 0) {
    execve(args[0], args.data(), env.data());
    static const char message[] = "suture-cc: cannot run the compiler\n";
    ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) fail("suture-cc: cannot wait for the compiler: {}", errno_text(errno));
  }
  return status;
}

void exit_like(int wait_status) {
  if (WIFSIGNALED(wait_status)) {
    int sig = WTERMSIG(wait_status);
    std::signal(sig, SIG_DFL);
    std::fflush(nullptr);
    raise(sig);
    std::exit(128 + sig);  // a signal that does not kill (or dumps nothing) still gives the shell's code
  }
  std::exit(WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 1);
}

bool succeeded(int wait_status) { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

}  // namespace suture::build::wrapper
