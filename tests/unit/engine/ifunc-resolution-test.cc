// IFUNCs of glibc resolved in suture's own process must give what the
// resolver gives in the target, and only when the target's glibc and tunables
// are the same as ours.
#include "engine/ifunc-resolution.h"

#include <elf.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "elf/elf-file.h"
#include "process/loaded-objects.h"
#include "process/proc-files.h"
#include "process/tracee.h"

namespace suture::engine {
namespace {

using namespace std::chrono_literals;

// /bin/sleep, started with `environment` and waited for until it sleeps.
class Sleeper {
 public:
  explicit Sleeper(std::vector<std::string> environment) {
    pid_ = fork();
    if (pid_ == 0) {
      std::vector<char*> env;
      for (auto& e : environment) env.push_back(e.data());
      env.push_back(nullptr);
      execle("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr), env.data());
      _exit(127);
    }
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (process::thread_state(pid_, pid_) != 'S' && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
  }
  ~Sleeper() {
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

std::vector<std::string> our_environment() {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) env.emplace_back(*e);
  return env;
}

const process::LoadedObject& libc_of(const std::vector<process::LoadedObject>& objects) {
  for (const auto& o : objects)
    if (o.path.find("/libc.so.") != std::string::npos) return o;
  throw std::runtime_error("no libc in the target");
}

// The resolver of libc's default memcpy, as an address in the target.
RemoteAddr memcpy_resolver(const process::LoadedObject& libc) {
  auto file = elf::ElfFile::open(libc.path);
  for (const auto& s : file.dynamic_symbols())
    if (s.name == "memcpy" && s.default_version && s.type == STT_GNU_IFUNC)
      return libc.bias + static_cast<int64_t>(s.value);
  throw std::runtime_error("libc has no IFUNC memcpy");
}

TEST(IfuncResolution, GivesWhatTheResolverGivesInTheTarget) {
  Sleeper target(our_environment());
  process::Tracee tracee(target.pid());
  auto objects = process::loaded_objects(target.pid(), tracee.memory());
  const auto& libc = libc_of(objects);
  RemoteAddr resolver = memcpy_resolver(libc);

  IfuncResolution here(tracee, objects);
  RemoteAddr local = here.resolve(resolver);
  EXPECT_EQ(here.resolved_locally(), 1u);
  EXPECT_EQ(here.resolved_in_target(), 0u);
  EXPECT_EQ(here.resolve(resolver), local);  // asked again: the same answer, no second resolution
  EXPECT_EQ(here.resolved_locally(), 1u);

  IfuncResolution there(tracee, objects);
  there.always_in_target();
  EXPECT_EQ(there.resolve(resolver), local);
  EXPECT_EQ(there.resolved_in_target(), 1u);
  EXPECT_TRUE(libc.span.contains(local));
  EXPECT_NE(local, resolver);
}

TEST(IfuncResolution, RunsTheResolverInTheTargetWhenItsTunablesDiffer) {
  auto env = our_environment();
  std::erase_if(env, [](const std::string& e) { return e.rfind("GLIBC_TUNABLES=", 0) == 0; });
  std::string ours = getenv("GLIBC_TUNABLES") ? getenv("GLIBC_TUNABLES") : "";
  env.push_back("GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX2,-ERMS" + (ours.empty() ? "" : ":" + ours));
  Sleeper target(env);
  process::Tracee tracee(target.pid());
  auto objects = process::loaded_objects(target.pid(), tracee.memory());
  const auto& libc = libc_of(objects);

  IfuncResolution resolution(tracee, objects);
  RemoteAddr chosen = resolution.resolve(memcpy_resolver(libc));
  EXPECT_EQ(resolution.resolved_locally(), 0u);
  EXPECT_EQ(resolution.resolved_in_target(), 1u);
  EXPECT_TRUE(libc.span.contains(chosen));
}

}  // namespace
}  // namespace suture::engine
