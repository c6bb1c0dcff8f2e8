// revert: take patches back, newest first.
//   1. read the records the target carries; pick the patches to revert
//   2. refuse when a newer patch that stays depends on one that goes (it replaces
//      a function the older one replaced too, or its code calls into the older
//      patch's region)
//   3. stop the world when no thread is inside the new code of any of them
//   4. check every entry still holds our jump, then put the original bytes back
//   5. unmap the regions; release
// In zero-suspend mode steps 3-4 are one live switch (live-switch.cc): the
// entries change back while every thread runs (a call that arrives meanwhile is
// steered to the code still in place), then we wait, holding no one for more
// than a moment, until no thread runs the code that goes; then unmap.
#include <algorithm>
#include <set>

#include <fmt/ranges.h>

#include "common/error.h"
#include "common/interrupt.h"
#include "consistency/stop-the-world.h"
#include "engine/engine.h"
#include "engine/patch-region.h"
#include "engine/safe-point-transition.h"
#include "engine/target-model.h"
#include "engine/undo-log.h"
#include "engine/unwind-registration.h"
#include "process/helper-thread.h"
#include "process/tracee.h"

namespace suture::engine {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<const PatchRecord*> select(const std::vector<PatchRecord>& records, const std::vector<std::string>& ids,
                                       pid_t pid) {
  std::vector<const PatchRecord*> chosen;
  if (ids.empty()) {
    for (const auto& r : records) chosen.push_back(&r);
  } else {
    for (const auto& id : ids) {
      std::vector<const PatchRecord*> hits;
      for (const auto& r : records)
        if (r.id.rfind(id, 0) == 0) hits.push_back(&r);
      if (hits.empty()) {
        std::string applied;
        for (const auto& r : records) applied += (applied.empty() ? "" : ", ") + r.id;
        fail("process {} has no patch {} (applied: {})", pid, id, applied.empty() ? "none" : applied);
      }
      if (hits.size() > 1) fail("'{}' names several patches of process {}; give more of the id", id, pid);
      if (std::find(chosen.begin(), chosen.end(), hits[0]) == chosen.end()) chosen.push_back(hits[0]);
    }
  }
  // Newest first.
  std::sort(chosen.begin(), chosen.end(), [](auto* a, auto* b) { return a->sequence > b->sequence; });
  return chosen;
}

void check_dependencies(const std::vector<PatchRecord>& records, const std::vector<const PatchRecord*>& chosen) {
  std::set<const PatchRecord*> going(chosen.begin(), chosen.end());
  for (const PatchRecord* old : chosen) {
    for (const auto& newer : records) {
      if (newer.sequence <= old->sequence || going.count(&newer)) continue;
      for (const auto& a : old->redirects)
        for (const auto& b : newer.redirects)
          if (a.site == b.site)
            fail("cannot revert patch {}: patch {}, applied after it, replaces {} too; revert {} first", old->id,
                 newer.id, a.name, newer.id);
      for (auto address : newer.imports)
        if (old->region.contains(address))
          fail("cannot revert patch {}: patch {}, applied after it, uses its code or data at {}; revert {} first",
               old->id, newer.id, address, newer.id);
    }
  }
}

// The patch's code and thunks: nothing may run there when it is unmapped.
std::vector<consistency::BusyRange> code_of(const std::vector<const PatchRecord*>& chosen) {
  std::vector<consistency::BusyRange> busy;
  for (const auto* r : chosen) {
    busy.push_back({r->text, fmt::format("the code of patch {}", r->id)});
    if (!r->thunks.empty()) busy.push_back({r->thunks, fmt::format("the thunks of patch {}", r->id)});
  }
  return busy;
}

// Unmaps the regions of reverted patches; failures are collected, not thrown.
void unmap_all(process::Tracee& tracee, const TargetModel& model, const std::vector<const PatchRecord*>& chosen) {
  std::vector<std::string> leftovers;
  for (const auto* r : chosen) {
    try {
      // The unwinder reads the tables until told otherwise; one that keeps them keeps the region mapped.
      deregister_unwind_tables(tracee, model, r->unwind);
      unmap_region(tracee, r->region);
    } catch (const TargetGone&) {
      throw;
    } catch (const Error& e) {
      leftovers.push_back(fmt::format("patch {}: {}", r->id, e.what()));
    }
  }
  tracee.release_all();
  if (!leftovers.empty())
    fail("reverted, but the memory of {} could not be unmapped: {}", leftovers.size() == 1 ? "a patch" : "patches",
         fmt::join(leftovers, "; "));
}

RevertReport revert_live(pid_t pid, process::Tracee& tracee, const TargetModel& model,
                         const std::vector<const PatchRecord*>& chosen,
                         const RevertOptions& options, std::chrono::steady_clock::time_point started) {
  RevertReport report;
  report.mode = Mode::zero_suspend;
  std::vector<consistency::EntryChange> changes;
  for (const auto* r : chosen) {
    for (const auto& d : r->redirects) {
      auto now = tracee.memory().read(d.site, d.jump.size());
      if (now == d.jump)
        changes.push_back({d.name, d.site, d.jump, d.original, d.thunk.empty() ? d.destination : d.thunk.start});
      else if (!(r->state == RecordState::prepared && now == d.original))
        fail("patch {}: the entry of {} at {} no longer holds its jump; not reverting anything", r->id, d.name, d.site);
    }
  }
  consistency::LiveSwitchOptions live;
  live.timeout = options.timeout;
  live.helper = tracee.helper();
  live.syscall_server = tracee.syscall_server();
  live.wait_clear = code_of(chosen);
  live.old_code = live.wait_clear;
  live.code_tables = code_unwind_tables(model.records());
  tracee.release_all();
  if (changes.empty()) {
    // Only unfinished applies: nothing redirected; wait for nobody.
    report.live.threads = 0;
  } else {
    report.live = consistency::switch_entries_live(pid, changes, live);
  }
  // Entries are back and nobody runs the code: from here on, only unmapping.
  unmap_all(tracee, model, chosen);
  // Unmapping and unwind deregistration hold threads too.
  report.pause = report.live.longest_hold = std::max(tracee.longest_hold(), report.live.longest_hold);
  report.threads = report.live.threads;
  for (const auto* r : chosen) report.reverted.push_back(*r);
  report.total = std::chrono::steady_clock::now() - started;
  return report;
}

RevertReport revert_at_safe_point(pid_t pid, process::Tracee& tracee, TargetModel& model,
                                  const std::vector<const PatchRecord*>& chosen, const RevertOptions& options,
                                  std::chrono::steady_clock::time_point started) {
  RevertReport report;
  report.mode = Mode::zero_suspend;
  TransitionInput in;
  in.safe_point = options.safe_point;
  in.timeout = options.timeout;
  in.reverting = true;
  in.new_code = code_of(chosen);
  in.code_tables = code_unwind_tables(model.records());
  std::optional<size_t> object;
  for (const auto* r : chosen) {
    for (size_t i = 0; i < model.objects().size(); ++i)
      if (model.objects()[i].span.contains(r->redirects.empty() ? r->region.start : r->redirects.front().function))
        object = i;
    for (const auto& d : r->redirects) {
      auto now = tracee.memory().read(d.site, d.jump.size());
      if (now != d.jump)
        fail("patch {}: the entry of {} at {} no longer holds its jump{}; not reverting anything", r->id, d.name,
             d.site, r->state == RecordState::prepared ? " (an apply that did not finish: revert it without --safe-point)" : "");
      in.redirects.push_back(&d);
      in.old_code.push_back({{d.function, std::max<uint64_t>(d.function_size, 1)}, d.name});
    }
    in.name += (in.name.empty() ? "" : "+") + r->id;
  }
  if (!object) fail("--safe-point: the patched functions are in no object process {} has loaded", pid);
  for (const auto* r : chosen)
    for (const auto& d : r->redirects)
      if (!model.objects()[*object].span.contains(d.function))
        fail("--safe-point: these patches change several objects; revert them one object at a time");
  in.object = *object;
  UndoLog undo;
  tracee.release_all();
  report.transition = run_safe_point_transition(tracee, model, undo, in);
  undo.commit();
  unmap_all(tracee, model, chosen);
  report.live = finish_transition(tracee, *report.transition);
  report.pause = report.live.longest_hold;
  report.threads = report.live.threads;
  for (const auto* r : chosen) report.reverted.push_back(*r);
  report.total = std::chrono::steady_clock::now() - started;
  return report;
}

}  // namespace

RevertReport revert(pid_t pid, const std::vector<std::string>& ids, const RevertOptions& options) {
  auto started = Clock::now();
  RevertReport report;
  process::Tracee tracee(pid);
  TargetModel model(tracee);
  // Zero-suspend: system calls in the target run on a thread of suture's own
  // (destroyed after the undo log below, which may need it).
  std::optional<process::HelperThread> helper;
  if (options.mode == Mode::zero_suspend) helper.emplace(tracee);
  const auto& records = model.records();
  if (records.empty()) fail("process {} has no patches applied", pid);

  auto chosen = select(records, ids, pid);
  check_dependencies(records, chosen);
  check_interrupt();
  if (!options.safe_point.empty() && options.mode != Mode::zero_suspend)
    fail("--safe-point needs --mode zero-suspend");
  if (options.mode == Mode::zero_suspend) {
    RevertReport live = options.safe_point.empty() ? revert_live(pid, tracee, model, chosen, options, started)
                                                   : revert_at_safe_point(pid, tracee, model, chosen, options, started);
    live.live.helper = helper->tid();
    live.live.no_helper = helper->why_not();
    return live;
  }

  // No thread may be running (or be about to return into) the code that goes away.
  auto busy = code_of(chosen);
  auto safe = consistency::wait_for_safe_point(tracee, busy, options.timeout, code_unwind_tables(records));
  report.attempts = safe.attempts;
  if (!safe.safe) fail("{}", model.describe_refusal(safe, options.timeout));
  report.threads = tracee.held_threads().size();

  // Every entry must hold our jump (or, for a patch whose apply never finished,
  // possibly still the original bytes); anything else means someone else wrote
  // there, and we change nothing.
  std::vector<std::pair<const RedirectRecord*, bool>> writes;  // redirect, needs restoring
  for (const auto* r : chosen) {
    for (const auto& d : r->redirects) {
      auto now = tracee.memory().read(d.site, d.jump.size());
      if (now == d.jump) {
        writes.emplace_back(&d, true);
      } else if (r->state == RecordState::prepared && now == d.original) {
        writes.emplace_back(&d, false);
      } else {
        fail("patch {}: the entry of {} at {} no longer holds its jump; not reverting anything", r->id, d.name, d.site);
      }
    }
  }

  UndoLog undo;
  for (const auto& [d, restore] : writes) {
    if (!restore) continue;
    tracee.memory().write(d->site, d->original);
    undo.push(fmt::format("re-redirect {}", d->name), [&tracee, d = *d] { tracee.memory().write(d.site, d.jump); });
  }
  // Every entry is back: from here on nothing may be re-redirected, since
  // unmapping cannot be undone. A region that will not unmap stays as unused
  // memory and is reported.
  undo.commit();
  unmap_all(tracee, model, chosen);

  report.pause = tracee.longest_hold();
  for (const auto* r : chosen) report.reverted.push_back(*r);
  report.total = Clock::now() - started;
  return report;
}

StatusReport status(pid_t pid) {
  process::Memory memory(pid);
  StatusReport report;
  report.records = read_records(pid, memory, &report.problems);
  return report;
}

}  // namespace suture::engine
