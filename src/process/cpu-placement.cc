#include "process/cpu-placement.h"

#include <sched.h>

#include <cerrno>

#include "process/proc-files.h"

namespace suture::process {

int settle_on_one_cpu(pid_t pid) {
  cpu_set_t ours, theirs, used;
  if (sched_getaffinity(0, sizeof ours, &ours) != 0) return -1;
  CPU_ZERO(&used);
  for (pid_t tid : list_threads(pid)) {
    if (sched_getaffinity(tid, sizeof theirs, &theirs) != 0) {
      if (errno == ESRCH) continue;  // gone meanwhile
      return -1;
    }
    CPU_OR(&used, &used, &theirs);
  }
  int now = sched_getcpu();
  int chosen = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE && chosen < 0; ++cpu)
    if (CPU_ISSET(cpu, &ours) && !CPU_ISSET(cpu, &used)) chosen = cpu;
  if (now >= 0 && CPU_ISSET(now, &ours) && (chosen < 0 || !CPU_ISSET(now, &used))) chosen = now;
  if (chosen < 0) return -1;
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(chosen, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0 ? chosen : -1;
}

}  // namespace suture::process
