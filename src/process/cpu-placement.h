// Where suture's controller runs during a live switch.
//
// Left to the scheduler, the controller, its unwinding thread and its stop
// watcher moved between CPUs at every wake-up, each time onto a CPU that a
// thread of the target was using or that had to be woken from idle: with
// suture unpinned beside a memcached pinned to one CPU of two, the longest
// hold of a switch was 82-190 us (16 of 20 switches over 100 us); settled on
// one CPU, 11-25 us. Settled, it is either case of a pinned suture: on a CPU
// of its own (one no thread of the target may use), or beside the target on
// the CPU it was on.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <optional>

namespace suture::process {

// The CPUs some thread of process `pid` may run on (the union of their
// affinities); nullopt if one could not be read.
std::optional<cpu_set_t> cpus_of(pid_t pid);

// Pins the calling thread, and so the threads it makes from then on, to one
// CPU of those it may use: one that no thread of process `pid` may use, if
// there is such a CPU, else the one it runs on now. Returns the CPU, or -1 if
// the affinities could not be read or set (the thread is left as it was).
int settle_on_one_cpu(pid_t pid);

// Whether the calling thread may run on no CPU that a thread of `pid` may run
// on (false when that cannot be told). A thread the target makes later
// inherits its maker's affinity.
bool runs_apart_from(pid_t pid);

}  // namespace suture::process
