// apply: put new code into a running process and redirect old functions to it.
//
// The driver reads as the steps a reviewer expects, each with its undo:
//   1. match each patch to a loaded object by build-id
//   2. for each patch: reserve space near its object, link the object there in
//      a local copy, write it, map it with its final protections — all while the
//      target runs (one thread is held for a few system calls at a time)
//   3. plan every redirect (decode the old entries, check they can take a jump)
//   4. stop the world only now: hold every thread and wait until none is inside
//      a function being replaced (or, when a function is patched again, inside
//      its current replacement)
//   5. write the jumps and mark the records active
//   6. release; report the pause (the longest any thread was held)
// In zero-suspend mode steps 4-6 are one live switch instead (live-switch.cc):
// entries change while every thread runs, each thread held alone if at all.
// Applying several patches in one call is all or nothing: one undo log spans them.
#include <sys/mman.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "common/error.h"
#include "common/interrupt.h"
#include "consistency/stop-the-world.h"
#include "elf/elf-file.h"
#include "engine/engine.h"
#include "engine/patch-region.h"
#include "engine/safe-point-transition.h"
#include "engine/target-model.h"
#include "engine/undo-log.h"
#include "engine/unwind-registration.h"
#include "link/link-patch.h"
#include "process/helper-thread.h"
#include "process/tracee.h"
#include "redirect/entry-jump.h"
#include "redirect/preserving-thunk.h"

namespace suture::engine {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;

uint64_t page_round(uint64_t n) { return (n + kPage - 1) & ~(kPage - 1); }

// A patch matched to its object, with everything planned before the world stops.
struct Prepared {
  const PatchInput* input = nullptr;
  size_t object = 0;
  PatchRecord record;
  std::vector<consistency::BusyRange> busy;
};

std::optional<std::string> already_applied(const TargetModel& model, const patchfile::Patch& patch) {
  for (const auto& r : model.records()) {
    if (r.id != patch.id) continue;
    if (r.state == RecordState::prepared)
      return fmt::format("an earlier apply of patch {} did not finish (its code is mapped, no function redirected); "
                         "`suture revert {}` removes it",
                         patch.id, patch.id);
    return fmt::format("patch {} is already applied (sequence {})", patch.id, r.sequence);
  }
  return std::nullopt;
}

// The record of the newest patch whose jump sits at `site`, if any.
const PatchRecord* current_owner(const std::vector<PatchRecord>& records, RemoteAddr site,
                                 const RedirectRecord** redirect) {
  for (auto it = records.rbegin(); it != records.rend(); ++it) {
    for (const auto& d : it->redirects) {
      if (d.site == site) {
        *redirect = &d;
        return &*it;
      }
    }
  }
  return nullptr;
}

Prepared prepare(process::Tracee& tracee, TargetModel& model, UndoLog& undo,
                 std::vector<std::unique_ptr<PatchRegion>>& regions, const PatchInput& input, size_t object_index,
                 uint64_t sequence) {
  const auto& patch = input.patch;
  const auto& object = model.objects()[object_index];
  auto elf_object = elf::ElfFile::parse(patch.object, input.origin);

  Prepared p;
  p.input = &input;
  p.object = object_index;
  PatchRecord& rec = p.record;
  rec.sequence = sequence;
  rec.id = patch.id;
  rec.name = patch.name;
  rec.target_build_id = patch.target_build_id;
  rec.object_path = object.path;
  rec.applied_unix = static_cast<uint64_t>(std::time(nullptr));
  rec.state = RecordState::prepared;
  for (const auto& r : patch.replacements) {
    RedirectRecord d;
    d.name = r.symbol;
    d.original.assign(redirect::kJumpSize, 0);
    d.jump.assign(redirect::kJumpSize, 0);
    rec.redirects.push_back(d);
  }

  // Room for the record: its size does not depend on addresses (fixed-width hex),
  // only imports are unknown yet; leave generous slack for them.
  link::PartSizes sizes = link::measure(elf_object);
  uint64_t record_size = page_round(encode_record(rec).size() + 64 * 24 + kPage);
  uint64_t thunks_size = 0;
  for (const auto& r : patch.replacements)
    if (r.preserve) thunks_size += redirect::preserving_thunk_size(r.preserve, r.stack_argument_bytes);
  thunks_size = page_round(thunks_size + thunk_unwind_table_size(patch));
  uint64_t total = record_size + sizes.total() + thunks_size;
  regions.push_back(std::make_unique<PatchRegion>(tracee, undo, object.span, total,
                                                  fmt::format("{}{}:{}", kMemfdPrefix, sequence, patch.id)));
  PatchRegion& region = *regions.back();
  // Hold no thread while linking: the one used for the system calls above goes
  // back to work and is held again, briefly, to map the result.
  tracee.release_all();
  RemoteAddr base = region.range().start;
  link::Placement placement{base + static_cast<int64_t>(record_size),
                            base + static_cast<int64_t>(record_size + sizes.text),
                            base + static_cast<int64_t>(record_size + sizes.text + sizes.rodata)};
  rec.region = region.range();
  rec.text = {placement.text, sizes.text};
  rec.rodata = {placement.rodata, sizes.rodata};
  rec.data = {placement.data, sizes.data};
  const uint64_t thunks_offset = record_size + sizes.total();
  rec.thunks = {base + static_cast<int64_t>(thunks_offset), thunks_size};
  std::vector<uint8_t> thunks;

  // Link in a local copy that knows its final addresses. IFUNC resolvers may run
  // in the target here; nothing else does.
  std::map<std::string, std::pair<std::string, std::string>> bindings;
  for (const auto& b : patch.bindings) bindings[b.local] = {b.symbol, b.file};
  link::LinkedPatch linked = link::link_patch(elf_object, model.symbols(), object_index, bindings, placement);
  for (const auto& [name, address] : linked.imports) rec.imports.push_back(address);
  check_interrupt();

  // Plan each redirect from the bytes the target has now.
  for (size_t i = 0; i < patch.replacements.size(); ++i) {
    const auto& r = patch.replacements[i];
    RedirectRecord& d = rec.redirects[i];
    d.function = object.bias + static_cast<int64_t>(r.target_value);
    d.function_size = r.target_size;
    auto found = linked.defined.find(r.new_symbol);
    if (found == linked.defined.end())
      fail("{}: replacement for {}: '{}' is not defined by the patch", input.origin, r.symbol, r.new_symbol);
    d.destination = found->second;
    d.destination_size = 0;
    for (const auto& s : elf_object.symbols())
      if (s.name == r.new_symbol && s.defined()) d.destination_size = s.size;
    RemoteAddr jump_to = d.destination;
    if (r.preserve) {
      // Callers may keep values in registers the old function never wrote: go
      // through a thunk that keeps them (see pack's register contract).
      RemoteAddr at = rec.thunks.start + static_cast<int64_t>(thunks.size());
      auto thunk = redirect::encode_preserving_thunk(at, d.destination, r.preserve, r.stack_argument_bytes);
      d.thunk = {at, thunk.size()};
      thunks.insert(thunks.end(), thunk.begin(), thunk.end());
      jump_to = at;
    }
    if (!object.span.contains(d.function))
      fail("{}: {} at {} is outside {} as loaded; was the patch packed against this build?", input.origin, r.symbol,
           d.function, object.path);
    auto code = tracee.memory().read(d.function, d.function_size);
    auto jump = redirect::plan_entry_jump(r.symbol, d.function, code, jump_to);
    d.site = jump.site;
    d.original = jump.original;
    d.jump = jump.jump;

    p.busy.push_back({{d.function, d.function_size}, r.symbol});
    for (auto part : model.cold_parts(object_index, r.symbol, r.file))
      p.busy.push_back({part, r.symbol + " (its .cold part)"});
    const RedirectRecord* previous = nullptr;
    if (const PatchRecord* owner = current_owner(model.records(), d.site, &previous)) {
      // Patched before: threads running the current replacement are inside it too.
      p.busy.push_back({{previous->destination, std::max<uint64_t>(previous->destination_size, 1)},
                        fmt::format("{} (as patched by {})", r.symbol, owner->id)});
      if (!previous->thunk.empty())
        p.busy.push_back({previous->thunk, fmt::format("{} (thunk of {})", r.symbol, owner->id)});
    }
  }
  // Unwind tables for patch code and thunks, so that a throw can cross them.
  plan_unwind_registration(model, object_index, patch, linked, thunks, rec);
  if (rec.imports.size() > 64) {
    // The slack above holds 64 imports; keep only what dependency checks need:
    // imports inside earlier patch regions.
    std::vector<RemoteAddr> kept;
    for (auto a : rec.imports)
      for (const auto& other : model.records())
        if (other.region.contains(a)) kept.push_back(a);
    rec.imports = kept;
  }

  auto record_bytes = encode_record(rec);
  if (record_bytes.size() > record_size) fail("internal: patch record larger than its space");
  region.write(0, record_bytes);
  region.write(record_size, linked.text);
  region.write(record_size + sizes.text, linked.rodata);
  region.write(record_size + sizes.text + sizes.rodata, linked.data);
  thunks.resize(thunks_size, 0xcc);  // int3 padding
  region.write(thunks_offset, thunks);
  region.map({{0, record_size, PROT_READ},
              {record_size, sizes.text, PROT_READ | PROT_EXEC},
              {record_size + sizes.text, sizes.rodata, PROT_READ},
              {record_size + sizes.text + sizes.rodata, sizes.data, PROT_READ | PROT_WRITE},
              {thunks_offset, thunks_size, PROT_READ | PROT_EXEC}});
  // Known to the unwinder before any redirect can put a frame of the patch on a stack.
  undo.push(fmt::format("deregister the unwind tables of patch {}", patch.id),
            [&tracee, &model, unwind = rec.unwind] { deregister_unwind_tables(tracee, model, unwind); });
  register_unwind_tables(tracee, rec.unwind);
  return p;
}

// Zero-suspend: the entries change while the target runs.
consistency::LiveSwitchReport switch_live(pid_t pid, const std::vector<Prepared>& prepared,
                                          std::chrono::milliseconds timeout, const process::Tracee& tracee,
                                          std::vector<consistency::CodeUnwindTables> code_tables, UndoLog& undo) {
  std::vector<consistency::EntryChange> changes;
  consistency::LiveSwitchOptions options;
  options.timeout = timeout;
  options.helper = tracee.helper();
  options.syscall_server = tracee.syscall_server();
  options.code_tables = std::move(code_tables);
  for (const auto& p : prepared) {
    for (const auto& d : p.record.redirects)
      changes.push_back({d.name, d.site, d.original, d.jump, d.thunk.empty() ? d.destination : d.thunk.start});
    options.old_code.insert(options.old_code.end(), p.busy.begin(), p.busy.end());
    options.steer_code.push_back({p.record.text, fmt::format("the code of patch {}", p.record.id)});
    if (!p.record.thunks.empty())
      options.steer_code.push_back({p.record.thunks, fmt::format("the thunks of patch {}", p.record.id)});
  }
  try {
    return consistency::switch_entries_live(pid, changes, options);
  } catch (const consistency::SteeredThreadsRemain& e) {
    // A thread still runs the new code: unmapping it would crash the target.
    // Its records stay "prepared" (no function redirected); revert removes them.
    undo.commit();
    std::string ids;
    for (const auto& p : prepared) ids += " " + p.record.id;
    fail("{}; `suture revert {}{}` removes it", e.what(), pid, ids);
  }
}

}  // namespace

std::vector<PatchInput> load_patch_inputs(const std::vector<std::string>& paths) {
  std::vector<PatchInput> inputs;
  for (const auto& path : paths) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      std::vector<std::string> files;
      for (const auto& entry : std::filesystem::directory_iterator(path)) {
        if (!entry.is_regular_file()) continue;
        std::ifstream in(entry.path(), std::ios::binary);
        char magic[8] = {};
        in.read(magic, sizeof magic);
        if (in.gcount() == sizeof magic &&
            patchfile::looks_like_patch({reinterpret_cast<const uint8_t*>(magic), sizeof magic}))
          files.push_back(entry.path().string());
      }
      std::sort(files.begin(), files.end());
      for (const auto& f : files) inputs.push_back({f, patchfile::read_file(f), true});
    } else {
      inputs.push_back({path, patchfile::read_file(path), false});
    }
  }
  return inputs;
}

ApplyReport apply(pid_t pid, const std::vector<PatchInput>& patches, const ApplyOptions& options) {
  auto started = Clock::now();
  ApplyReport report;

  // The tracee outlives the undo log: undos run while we still hold what we hold.
  process::Tracee tracee(pid);
  TargetModel model(tracee);
  // Zero-suspend: system calls in the target run on a thread of suture's own
  // (destroyed after the undo log below, which may need it).
  std::optional<process::HelperThread> helper;
  if (options.mode == Mode::zero_suspend) helper.emplace(tracee);

  // 1. match each patch to the object with its build-id
  std::vector<std::pair<const PatchInput*, size_t>> matched;
  std::set<std::string> ids;
  for (const auto& input : patches) {
    const auto& patch = input.patch;
    auto object = model.find_by_build_id(patch.target_build_id);
    std::string why;
    if (!object)
      why = fmt::format("built for {} (build-id {}), which process {} has not loaded", patch.target_name,
                        patch.target_build_id, pid);
    else if (auto applied = already_applied(model, patch))
      why = *applied;
    else if (!ids.insert(patch.id).second)
      why = fmt::format("patch {} is given twice", patch.id);
    if (!why.empty()) {
      if (!input.from_directory) fail("{}: {}", input.origin, why);
      report.skipped.push_back({input.origin, why});
      continue;
    }
    matched.emplace_back(&input, *object);
  }
  if (matched.empty()) {
    // Say why each was skipped: "built for another build-id" and "an earlier
    // apply did not finish" call for different next steps.
    std::string why;
    for (const auto& skipped : report.skipped) why += fmt::format("; {}: {}", skipped.origin, skipped.reason);
    fail("no patch applies to process {}{}", pid, why);
  }

  // Regions outlive the undo log, whose entries may refer to them.
  std::vector<std::unique_ptr<PatchRegion>> regions;
  UndoLog undo;

  // 2-3. place, link, write and map each patch while the target runs
  uint64_t sequence = 1;
  for (const auto& r : model.records()) sequence = std::max(sequence, r.sequence + 1);
  std::vector<Prepared> prepared;
  for (const auto& [input, object] : matched) {
    check_interrupt();
    prepared.push_back(prepare(tracee, model, undo, regions, *input, object, sequence++));
  }
  // The frames of every patch's code, the new ones' included, for our unwinder.
  auto code_tables = code_unwind_tables(model.records());
  for (const auto& p : prepared) add_code_unwind_tables(p.record, code_tables);
  std::map<uint64_t, std::string> sites;
  for (const auto& p : prepared)
    for (const auto& d : p.record.redirects)
      if (auto [it, fresh] = sites.emplace(d.site.value(), p.record.id); !fresh)
        fail("{}: {} is also replaced by patch {} in this call", p.input->origin, d.name, it->second);
  tracee.release_all();
  check_interrupt();

  if (!options.safe_point.empty() && options.mode != Mode::zero_suspend)
    fail("--safe-point needs --mode zero-suspend");
  if (options.mode == Mode::zero_suspend && !options.safe_point.empty()) {
    report.mode = Mode::zero_suspend;
    TransitionInput in;
    in.safe_point = options.safe_point;
    in.object = prepared.front().object;
    in.timeout = options.timeout;
    std::string name;
    for (const auto& p : prepared) {
      if (p.object != in.object)
        fail("--safe-point: these patches change several objects; apply them one object at a time");
      for (const auto& d : p.record.redirects) in.redirects.push_back(&d);
      in.old_code.insert(in.old_code.end(), p.busy.begin(), p.busy.end());
      in.new_code.push_back({p.record.text, fmt::format("the code of patch {}", p.record.id)});
      if (!p.record.thunks.empty())
        in.new_code.push_back({p.record.thunks, fmt::format("the thunks of patch {}", p.record.id)});
      name += (name.empty() ? "" : "+") + p.record.id;
    }
    in.name = name;
    in.code_tables = code_tables;
    report.transition = run_safe_point_transition(tracee, model, undo, in);
    for (auto& p : prepared) {
      write_record_state(tracee.memory(), p.record, RecordState::active);
      p.record.state = RecordState::active;
    }
    undo.commit();
    report.live = finish_transition(tracee, *report.transition);
    report.live.helper = helper->tid();
    report.live.no_helper = helper->why_not();
    report.pause = report.live.longest_hold;
    report.threads = report.live.threads;
    for (auto& p : prepared) report.applied.push_back(std::move(p.record));
    report.total = Clock::now() - started;
    return report;
  }
  if (options.mode == Mode::zero_suspend) {
    report.mode = Mode::zero_suspend;
    report.live = switch_live(pid, prepared, options.timeout, tracee, code_tables, undo);
    report.live.helper = helper->tid();
    report.live.no_helper = helper->why_not();
    for (auto& p : prepared) {
      write_record_state(tracee.memory(), p.record, RecordState::active);
      p.record.state = RecordState::active;
    }
    undo.commit();
    // The holds around the switch (linking's IFUNC calls, unwind registration,
    // the helper's creation) count as much as those of the switch.
    report.pause = report.live.longest_hold = std::max(tracee.longest_hold(), report.live.longest_hold);
    report.threads = report.live.threads;
    for (auto& p : prepared) report.applied.push_back(std::move(p.record));
    report.total = Clock::now() - started;
    return report;
  }

  // 4. stop the world at a safe point
  std::vector<consistency::BusyRange> busy;
  for (const auto& p : prepared) busy.insert(busy.end(), p.busy.begin(), p.busy.end());
  auto safe = consistency::wait_for_safe_point(tracee, busy, options.timeout, code_tables);
  report.attempts = safe.attempts;
  if (!safe.safe) fail("{}", model.describe_refusal(safe, options.timeout));
  report.threads = tracee.held_threads().size();

  // 5. redirect: the entries must still hold what we planned against
  for (const auto& p : prepared) {
    for (const auto& d : p.record.redirects) {
      auto now = tracee.memory().read(d.site, d.original.size());
      if (now != d.original) fail("{}: the entry of {} changed while we prepared; nothing was applied", p.input->origin, d.name);
    }
  }
  for (const auto& p : prepared) {
    for (const auto& d : p.record.redirects) {
      tracee.memory().write(d.site, d.jump);
      undo.push(fmt::format("restore the entry of {}", d.name),
                [&tracee, d] { tracee.memory().write(d.site, d.original); });
    }
  }
  for (auto& p : prepared) {
    write_record_state(tracee.memory(), p.record, RecordState::active);
    p.record.state = RecordState::active;
  }
  undo.commit();

  // 6. release and report
  tracee.release_all();
  report.pause = tracee.longest_hold();
  for (auto& p : prepared) report.applied.push_back(std::move(p.record));
  report.total = Clock::now() - started;
  return report;
}

}  // namespace suture::engine
