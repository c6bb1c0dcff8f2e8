// Code that runs in the target during a safe-point transition (zero-suspend mode
// with --safe-point FUNC): each thread switches to the new code only when it
// next enters FUNC, so a request runs entirely on one version.
//
// Which threads have switched is kept in two tables of thread ids in the
// patch's transition memory, open addressing on tid & mask: the first written
// by the threads themselves (the safe-point hook, with lock cmpxchg), the second
// only by suture (threads found idle, with nothing of the old version on their
// stack). A thread's tid comes from glibc's struct pthread at %fs:tid_offset
// (the offset libc publishes for debuggers in _thread_db_pthread_tid).
//
//   dispatcher (the entry of each replaced function jumps here): the calling
//     thread in either table -> the new function; else count the call and run
//     the old function (its covered first instructions, copied, then back).
//   safe-point hook (FUNC's entry jumps here): put the calling thread in the
//     first table, then continue into FUNC (its new version if it is replaced).
//
// Every stub keeps every register but rflags (it saves what it uses on the
// stack below the return address, which no caller can hold live data in), and
// writes nothing but its table slot and its counter.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/remote-addr.h"

namespace suture::redirect {

struct TransitionTables {
  RemoteAddr switched_by_thread;  // uint32 slots[slots]
  RemoteAddr switched_by_suture;  // uint32 slots[slots]
  uint32_t slots = 0;             // a power of two
  uint32_t tid_offset = 0;        // %fs:tid_offset holds the thread's tid
};

// The dispatcher at `at` for one replaced function.
std::vector<uint8_t> encode_dispatcher(RemoteAddr at, const TransitionTables& tables, RemoteAddr new_code,
                                       RemoteAddr old_code, RemoteAddr old_calls_counter);

// The safe-point hook at `at`: marks the thread, then jumps to `continue_to`.
std::vector<uint8_t> encode_safe_point_hook(RemoteAddr at, const TransitionTables& tables, RemoteAddr continue_to);

// The old function, run out of line: its first instructions `covered` (whole
// instructions, from `site`, as many as a jump covers), copied to `at`, then a
// jump back to site + covered.size(). Throws Error naming `function` if one of
// them depends on where it runs (rip-relative operand, relative branch).
std::vector<uint8_t> encode_old_entry(std::string_view function, RemoteAddr at, RemoteAddr site,
                                      std::span<const uint8_t> covered);

// How many bytes from `site` the entry jump covers: whole instructions of
// `code` (the function's bytes from the site) up to at least 5.
size_t covered_length(std::string_view function, std::span<const uint8_t> code);

}  // namespace suture::redirect
