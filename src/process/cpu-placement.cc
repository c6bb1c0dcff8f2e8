#include "process/cpu-placement.h"

#include <cerrno>

#include "process/proc-files.h"

namespace suture::process {

std::optional<cpu_set_t> cpus_of(pid_t pid) {
  cpu_set_t used, theirs;
  CPU_ZERO(&used);
  for (pid_t tid : list_threads(pid)) {
    if (sched_getaffinity(tid, sizeof theirs, &theirs) != 0) {
      if (errno == ESRCH) continue;  // gone meanwhile
      return std::nullopt;
    }
    CPU_OR(&used, &used, &theirs);
  }
  return used;
}

int settle_on_one_cpu(pid_t pid) {
  cpu_set_t ours;
  auto used = cpus_of(pid);
  if (!used || sched_getaffinity(0, sizeof ours, &ours) != 0) return -1;
  int now = sched_getcpu();
  int chosen = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && chosen < 0; ++cpu)
    if (CPU_ISSET(cpu, &ours) && !CPU_ISSET(cpu, &*used)) chosen = cpu;
  if (now >= 0 && CPU_ISSET(now, &ours) && (chosen < 0 || !CPU_ISSET(now, &*used))) chosen = now;
  if (chosen < 0) return -1;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(chosen, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0 ? chosen : -1;
}

bool runs_apart_from(pid_t pid) {
  cpu_set_t ours;
  auto used = cpus_of(pid);
  if (!used || sched_getaffinity(0, sizeof ours, &ours) != 0) return false;
  CPU_AND(&ours, &ours, &*used);
  return CPU_COUNT(&ours) == 0;
}

}  // namespace suture::process
