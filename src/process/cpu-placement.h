// Where suture's controller runs during a live switch.
//
// Left to the scheduler, the controller, its unwinding thread and its stop
// watcher moved between CPUs at every wake-up, each time onto a CPU that a
// thread of the target was using or that had to be woken from idle: with
// suture unpinned beside a memcached pinned to one CPU of two, the longest
// hold of a switch was 79-288 us (16 of 20 switches over 100 us), against
// 10-35 us with suture pinned to memcached's CPU. Settled on one CPU for the
// switch, it is either case of a pinned suture: on a CPU of its own (one no
// thread of the target may use), or beside the target on the CPU it was on.
#pragma once

#include <sys/types.h>

namespace suture::process {

// Pins the calling thread, and so the threads it makes from then on, to one
// CPU of those it may use: one that no thread of process `pid` may use, if
// there is such a CPU, else the one it runs on now. Returns the CPU, or -1 if
// the affinities could not be read or set (the thread is left as it was).
int settle_on_one_cpu(pid_t pid);

}  // namespace suture::process
