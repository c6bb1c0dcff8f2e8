// spawn: running the real compiler with the wrapper's own streams and status.
//
// When nothing is left to do after the compiler, the wrapper becomes it
// (execv): no extra process, and status, signals and streams are the
// compiler's by construction. When a record must follow, it forks, waits, and
// then leaves with exactly the compiler's status, re-raising its signal if it
// died of one, so make sees the same thing either way.
#pragma once

#include <string>
#include <vector>

namespace suture::build::wrapper {

// ARGV[0] is an absolute path; ENVP is the complete environment, "NAME=value".
[[noreturn]] void exec_command(const std::vector<std::string>& argv, const std::vector<std::string>& envp);

// Runs ARGV to completion and returns its wait status. Throws Error if it cannot
// start (a child that cannot exec exits 127, like a shell).
int run_command(const std::vector<std::string>& argv, const std::vector<std::string>& envp);

// Exits with the status of a child that ended with WAIT_STATUS.
[[noreturn]] void exit_like(int wait_status);

bool succeeded(int wait_status);

}  // namespace suture::build::wrapper
