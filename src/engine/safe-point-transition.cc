// The safe-point transition (see safe-point-transition.h).
//
// Why this shape. Redirecting an entry is immediate for every thread at once;
// a request that is half done when it happens runs its first half on the old
// version and its second half on the new one. Linux livepatch avoids that per
// task with a flag the ftrace handler reads; we have no handler in the target
// and want none left after the patch, so the flag lives in a table the stubs
// read, only for the length of the transition, and the entries end up as the
// plain jumps of the stop-the-world and plain zero-suspend modes. Suture itself
// never stops a thread here: the switches are live (live-switch.cc), and idle
// threads are recognised from the pc and sp the kernel shows for a blocked
// thread, their stacks read while they stay blocked.
//
// Rejected: marking a thread switched when its stack holds no replaced
// function (livepatch's rule) — the request's other functions may already have
// run on the old version; the request boundary is FUNC's entry, and a thread is
// between requests only when FUNC is not on its stack either.
#include "engine/safe-point-transition.h"

#include <elf.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "common/interrupt.h"
#include "consistency/unwind.h"
#include "engine/patch-region.h"
#include "process/proc-files.h"
#include "redirect/entry-jump.h"
#include "redirect/transition-stubs.h"

namespace suture::engine {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kSlots = 4096;  // per table; a power of two, well above the thread count
constexpr uint64_t kPage = 4096;
constexpr uint64_t kStubRoom = 256;  // per function: dispatcher, old entry and padding fit well inside

uint64_t page_round(uint64_t n) { return (n + kPage - 1) & ~(kPage - 1); }

// Where glibc's struct pthread keeps the tid: libc publishes it for debuggers
// as _thread_db_pthread_tid = {bits, count, offset}.
uint32_t tid_offset(const TargetModel& model, pid_t pid) {
  for (size_t i = 0; i < model.objects().size(); ++i) {
    if (model.objects()[i].path.find("/libc.so") == std::string::npos) continue;
    const auto& file = model.file(i);
    for (const auto& s : file.dynamic_symbols()) {
      if (s.name != "_thread_db_pthread_tid" || !s.defined() || s.size < 12) continue;
      auto bytes = file.bytes_at_vaddr(s.value, 12);
      if (bytes.size() != 12) break;
      uint32_t field[3];
      std::memcpy(field, bytes.data(), sizeof field);
      if (field[0] == 32 && field[1] <= 1) return field[2];
    }
  }
  fail("--safe-point needs glibc's thread layout (_thread_db_pthread_tid of libc.so.6), which process {} does not "
       "show",
       pid);
}

RemoteAddr jump_target(RemoteAddr site, const std::vector<uint8_t>& jmp) {
  int32_t displacement;
  std::memcpy(&displacement, jmp.data() + 1, 4);
  return site + 5 + displacement;
}

// One entry that goes through the transition.
struct Entry {
  std::string name;
  RemoteAddr site;
  std::vector<uint8_t> original;     // now
  std::vector<uint8_t> via;          // during the transition: jump to its stub
  RemoteAddr stub;                   // the dispatcher or the hook
  std::vector<uint8_t> final_bytes;  // after: the redirect's jump, or (FUNC unpatched) the original
  RemoteAddr final_steer;            // where a call arriving during the second switch goes
};

class Transition {
 public:
  Transition(process::Tracee& tracee, TargetModel& model, UndoLog& undo, const TransitionInput& input)
      : tracee_(tracee), model_(model), undo_(undo), input_(input), pid_(tracee.pid()) {}

  TransitionReport run() {
    report_.safe_point = input_.safe_point;
    size_t threads = process::list_threads(pid_).size();
    if (threads > kSlots / 4)
      fail("--safe-point handles up to {} threads; process {} has {}", kSlots / 4, pid_, threads);
    lay_out();

    // 2. entries to the stubs, live
    std::vector<consistency::EntryChange> first;
    for (const auto& e : entries_) first.push_back({e.name, e.site, e.original, e.via, e.stub});
    consistency::LiveSwitchOptions options;
    options.timeout = input_.timeout;
    options.old_code = input_.old_code;
    if (!input_.reverting) options.steer_code = input_.new_code;
    options.steer_code.push_back({stubs_range_, "the transition stubs"});
    tracee_.release_all();
    report_.to_dispatchers = live(first, options);
    auto started = Clock::now();

    // 3. watch the threads switch
    std::vector<pid_t> stuck = watch(started);
    if (!stuck.empty()) roll_back_and_refuse(stuck);

    // 4. entries straight to the new code, live; then nobody may be in a stub
    std::vector<consistency::EntryChange> second;
    for (const auto& e : entries_) second.push_back({e.name, e.site, e.via, e.final_bytes, e.final_steer});
    consistency::LiveSwitchOptions finish;
    finish.timeout = input_.timeout;
    finish.wait_clear = {{stubs_range_, "the transition stubs"}};
    if (input_.reverting)  // the patches' code goes next
      finish.wait_clear.insert(finish.wait_clear.end(), input_.new_code.begin(), input_.new_code.end());
    report_.to_new_code = live(second, finish);
    report_.length = Clock::now() - started;
    auto counts = tracee_.memory().read(counters_, 8 * counter_names_.size());
    for (size_t i = 0; i < counter_names_.size(); ++i) {
      uint64_t n;
      std::memcpy(&n, counts.data() + 8 * i, 8);
      report_.old_calls[counter_names_[i]] = n;
    }
    report_.memory = region_->range();
    return report_;
  }

 private:
  // 1. the transition memory and the entries' plans
  void lay_out() {
    uint32_t offset = tid_offset(model_, pid_);
    auto func = model_.symbols().resolve_in_object(input_.safe_point, "", input_.object);
    if (func.type != STT_FUNC && func.type != STT_GNU_IFUNC)
      fail("--safe-point {}: not a function ({})", input_.safe_point, func.description);
    func_range_ = {func.address, std::max<uint64_t>(func.size, 1)};
    const RedirectRecord* func_redirect = nullptr;
    for (const auto* r : input_.redirects)
      if (r->function == func.address) func_redirect = r;

    size_t functions = input_.redirects.size();
    uint64_t data_size = page_round(8ull * kSlots + 8 * functions);
    uint64_t stubs_size = page_round(kStubRoom * (functions + 2));
    region_ = std::make_unique<PatchRegion>(tracee_, undo_, model_.objects()[input_.object].span,
                                            data_size + stubs_size, "suture-transition:" + input_.name);
    RemoteAddr base = region_->range().start;
    tables_ = {base, base + 4 * kSlots, kSlots, offset};
    counters_ = base + 8 * kSlots;
    stubs_ = base + static_cast<int64_t>(data_size);
    stubs_range_ = {stubs_, stubs_size};

    // Applying: from the bytes there now (the old version) to the redirect's
    // jump. Reverting: from the jump back to the original bytes, whose first
    // instructions run out of line meanwhile.
    bool back = input_.reverting;
    for (size_t i = 0; i < functions; ++i) {
      const RedirectRecord& r = *input_.redirects[i];
      counter_names_.push_back(r.name);
      if (&r == func_redirect) continue;  // its entry goes to the hook
      const auto& now = back ? r.jump : r.original;
      const auto& final_bytes = back ? r.original : r.jump;
      RemoteAddr from = version_at(r.name, r.site, now);
      RemoteAddr to = version_at(r.name, r.site, final_bytes);
      RemoteAddr at = next();
      append(redirect::encode_dispatcher(at, tables_, to, from, counters_ + static_cast<int64_t>(8 * i)));
      auto via = redirect::encode_jmp_rel32(r.site, at);
      entries_.push_back({r.name, r.site, now, {via.begin(), via.end()}, at, final_bytes, to});
    }

    Entry hook;
    hook.name = input_.safe_point;
    RemoteAddr continue_to;
    if (func_redirect) {
      // FUNC is replaced too: a thread entering it switches, so it runs the
      // version being switched to.
      hook.site = func_redirect->site;
      hook.original = back ? func_redirect->jump : func_redirect->original;
      hook.final_bytes = back ? func_redirect->original : func_redirect->jump;
      continue_to = version_at(input_.safe_point, hook.site, hook.final_bytes);
      hook.final_steer = continue_to;
    } else {
      auto code = tracee_.memory().read(func.address, func.size);
      auto jump = redirect::plan_entry_jump(input_.safe_point, func.address, code, func.address);
      hook.site = jump.site;
      hook.original = jump.original;
      hook.final_bytes = jump.original;
      continue_to = version_at(input_.safe_point, jump.site, jump.original);
      hook.final_steer = continue_to;  // its own first instructions, out of line: exact
    }
    hook.stub = next();
    append(redirect::encode_safe_point_hook(hook.stub, tables_, continue_to));
    auto via = redirect::encode_jmp_rel32(hook.site, hook.stub);
    hook.via = {via.begin(), via.end()};
    entries_.push_back(hook);

    if (code_.size() > stubs_size) fail("internal: transition stubs larger than their room");
    code_.resize(stubs_size, 0xcc);
    region_->write(data_size, code_);
    region_->map({{0, data_size, PROT_READ | PROT_WRITE}, {data_size, stubs_size, PROT_READ | PROT_EXEC}});
  }

  RemoteAddr next() const { return stubs_ + static_cast<int64_t>(code_.size()); }
  void append(const std::vector<uint8_t>& bytes) {
    code_.insert(code_.end(), bytes.begin(), bytes.end());
    code_.resize((code_.size() + 15) & ~size_t{15}, 0xcc);
  }

  // Where the version whose entry bytes are `first` runs during the
  // transition: where that jump goes, or the function's own first
  // instructions (`first`, then the bytes after them in memory) copied here.
  RemoteAddr version_at(const std::string& name, RemoteAddr site, const std::vector<uint8_t>& first) {
    if (first[0] == 0xe9) return jump_target(site, first);
    auto code = tracee_.memory().read(site, 32);
    std::copy(first.begin(), first.end(), code.begin());
    size_t covered = redirect::covered_length(name, code);
    RemoteAddr at = next();
    append(redirect::encode_old_entry(name, at, site, std::span(code).first(covered)));
    return at;
  }

  consistency::LiveSwitchReport live(const std::vector<consistency::EntryChange>& changes,
                                     const consistency::LiveSwitchOptions& options) {
    consistency::LiveSwitchOptions with_helper = options;
    with_helper.helper = tracee_.helper();
    with_helper.syscall_server = tracee_.syscall_server();
    with_helper.code_tables = input_.code_tables;
    try {
      return consistency::switch_entries_live(pid_, changes, with_helper);
    } catch (const consistency::SteeredThreadsRemain&) {
      undo_.commit();  // threads still run code we mapped: it stays
      throw;
    }
  }

  // 3. Returns the threads that neither marked themselves nor were found idle
  // before the timeout.
  std::vector<pid_t> watch(Clock::time_point started) {
    consistency::Unwinder unwinder(pid_, input_.code_tables);
    std::vector<consistency::BusyRange> in_request = input_.old_code;
    in_request.insert(in_request.end(), input_.new_code.begin(), input_.new_code.end());
    in_request.push_back({func_range_, input_.safe_point});
    in_request.push_back({stubs_range_, "the transition stubs"});
    std::vector<uint32_t> ours(kSlots, 0);  // our copy of the table only we write
    std::set<pid_t> switched;
    auto deadline = started + input_.timeout;
    for (;;) {
      check_interrupt();
      auto bytes = tracee_.memory().read(tables_.switched_by_thread, 4 * kSlots);
      std::set<uint32_t> marked;
      for (uint32_t i = 0; i < kSlots; ++i) {
        uint32_t tid;
        std::memcpy(&tid, bytes.data() + 4 * i, 4);
        if (tid) marked.insert(tid);
      }
      std::vector<pid_t> pending;
      for (pid_t tid : process::list_threads(pid_)) {
        if (switched.contains(tid) || tid == tracee_.helper()) continue;
        if (marked.contains(static_cast<uint32_t>(tid))) {
          note(tid, true, started);
          switched.insert(tid);
          continue;
        }
        if (idle(unwinder, tid, in_request)) {
          mark(ours, static_cast<uint32_t>(tid));
          note(tid, false, started);
          switched.insert(tid);
          continue;
        }
        pending.push_back(tid);
      }
      if (pending.empty()) return {};
      if (Clock::now() > deadline) return pending;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  // Blocked in the kernel with nothing of a request on its stack.
  bool idle(consistency::Unwinder& unwinder, pid_t tid, const std::vector<consistency::BusyRange>& in_request) {
    auto trace = consistency::unwind_blocked(unwinder, pid_, tid);
    return trace && !consistency::frame_in(*trace, in_request);
  }

  void mark(std::vector<uint32_t>& ours, uint32_t tid) {
    uint32_t slot = tid & (kSlots - 1);
    while (ours[slot] != 0) slot = (slot + 1) & (kSlots - 1);
    ours[slot] = tid;
    std::vector<uint8_t> bytes(4);
    std::memcpy(bytes.data(), &tid, 4);
    tracee_.memory().write(tables_.switched_by_suture + static_cast<int64_t>(4 * slot), bytes);
  }

  void note(pid_t tid, bool at_safe_point, Clock::time_point started) {
    report_.switched.push_back({tid, process::thread_name(pid_, tid), at_safe_point,
                                std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started)});
  }

  [[noreturn]] void roll_back_and_refuse(const std::vector<pid_t>& stuck) {
    std::string who;
    for (pid_t tid : stuck) {
      who += fmt::format("{}{} ({})", who.empty() ? "" : ", ", tid, process::thread_name(pid_, tid));
      auto view = process::blocked_view(pid_, tid);
      who += view ? fmt::format(" blocked at {}", model_.symbolize(view->pc)) : std::string(" running");
    }
    std::vector<consistency::EntryChange> back;
    for (const auto& e : entries_) back.push_back({e.name, e.site, e.via, e.original, e.stub});
    consistency::LiveSwitchOptions options;
    options.timeout = input_.timeout;
    // Applying, threads that switched may run the new code, which the undo
    // unmaps; reverting, the patch stays. The stubs go either way.
    options.wait_clear = input_.reverting ? std::vector<consistency::BusyRange>{} : input_.new_code;
    options.wait_clear.push_back({stubs_range_, "the transition stubs"});
    live(back, options);
    fail("--safe-point {}: within {} ms these threads neither entered it nor blocked between requests: {}; the "
         "entries are back as they were",
         input_.safe_point, input_.timeout.count(), who);
  }

  process::Tracee& tracee_;
  TargetModel& model_;
  UndoLog& undo_;
  const TransitionInput& input_;
  pid_t pid_;
  TransitionReport report_;
  std::unique_ptr<PatchRegion> region_;
  redirect::TransitionTables tables_;
  RemoteAddr counters_, stubs_;
  RemoteRange stubs_range_, func_range_;
  std::vector<uint8_t> code_;
  std::vector<Entry> entries_;
  std::vector<std::string> counter_names_;
};

}  // namespace

TransitionReport run_safe_point_transition(process::Tracee& tracee, TargetModel& model, UndoLog& undo,
                                           const TransitionInput& input) {
  return Transition(tracee, model, undo, input).run();
}

consistency::LiveSwitchReport finish_transition(process::Tracee& tracee, const TransitionReport& transition) {
  try {
    unmap_region(tracee, transition.memory);
  } catch (const TargetGone&) {
    throw;
  } catch (const Error& e) {
    fmt::print(stderr, "suture: warning: the transition memory stays mapped: {}\n", e.what());
  }
  consistency::LiveSwitchReport live = transition.to_dispatchers;
  live.longest_hold = std::max({tracee.longest_hold(), transition.to_dispatchers.longest_hold,
                                transition.to_new_code.longest_hold});
  return live;
}

}  // namespace suture::engine
