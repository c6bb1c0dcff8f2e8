#include "cli/live-report.h"

#include <map>

#include <fmt/format.h>

#include "cli/format.h"

namespace suture::cli {

void add_mode_option(CLI::App& app, engine::Mode& mode) {
  std::map<std::string, engine::Mode> modes{{"stop-the-world", engine::Mode::stop_the_world},
                                            {"zero-suspend", engine::Mode::zero_suspend}};
  app.add_option("--mode", mode,
                 "stop-the-world (hold every thread at once for the switch) or zero-suspend (switch while threads "
                 "run; each thread held alone, briefly, if at all)")
      ->transform(CLI::CheckedTransformer(modes, CLI::ignore_case));
}

const char* mode_name(engine::Mode mode) {
  return mode == engine::Mode::zero_suspend ? "zero-suspend" : "stop-the-world";
}

nlohmann::json live_json(const consistency::LiveSwitchReport& live) {
  nlohmann::json j;
  j["longest_hold_us"] = live.longest_hold.count() / 1000.0;
  j["switch_us"] = live.length.count() / 1000.0;
  j["waited_clear_us"] = live.waited_clear.count() / 1000.0;
  j["threads"] = live.threads;
  j["threads_held"] = live.threads_held;
  j["threads_seen_without_hold"] = live.threads_seen_running;
  j["threads_seen_at_trap"] = live.threads_seen_at_trap;
  j["steps"] = live.steps;
  j["syncs"] = live.syncs;
  if (live.helper != 0) j["helper_thread"] = live.helper;
  if (!live.no_helper.empty()) j["no_helper_thread"] = live.no_helper;
  j["steered_calls"] = nlohmann::json::object();
  for (const auto& [function, count] : live.steered) j["steered_calls"][function] = count;
  j["old_frames"] = nlohmann::json::array();
  for (const auto& f : live.old_frames)
    j["old_frames"].push_back({{"tid", f.tid}, {"thread", f.thread_name}, {"function", f.function}});
  return j;
}

void print_live(const consistency::LiveSwitchReport& live, const char* old_code_name) {
  fmt::print("zero-suspend: longest hold {} (one thread at a time); {} threads: {} seen blocked without a hold, {} "
             "at a trap of their own, {} held briefly; switch {} ({} core syncs)\n",
             format_duration(live.longest_hold), live.threads, live.threads_seen_running, live.threads_seen_at_trap,
             live.threads_held, format_duration(live.length), live.syncs);
  if (live.helper != 0)
    fmt::print("  system calls in the target ran on suture's helper thread {}\n", live.helper);
  else if (!live.no_helper.empty())
    fmt::print("  no helper thread ({}): system calls in the target held its own threads\n", live.no_helper);
  uint64_t steered = 0;
  for (const auto& [function, count] : live.steered) steered += count;
  if (steered > 0) {
    std::string list;
    for (const auto& [function, count] : live.steered) list += fmt::format("{}{} {}", list.empty() ? "" : ", ", function, count);
    fmt::print("  calls that reached an entry while it changed, steered: {}\n", list);
  }
  if (live.waited_clear.count() > 0)
    fmt::print("  waited {} for threads to leave the code that goes\n", format_duration(live.waited_clear));
  for (const auto& f : live.old_frames)
    fmt::print("  thread {} ({}) still runs {} {}: that call finishes there; its next calls take the new entry\n",
               f.tid, f.thread_name, old_code_name, f.function);
}

nlohmann::json transition_json(const engine::TransitionReport& t) {
  nlohmann::json j;
  j["safe_point"] = t.safe_point;
  j["length_us"] = t.length.count() / 1000.0;
  j["threads"] = nlohmann::json::array();
  for (const auto& s : t.switched)
    j["threads"].push_back({{"tid", s.tid},
                            {"thread", s.thread_name},
                            {"how", s.at_safe_point ? "entered the safe point" : "idle between requests"},
                            {"after_us", s.after.count() / 1000.0}});
  j["old_calls"] = nlohmann::json::object();
  for (const auto& [function, n] : t.old_calls) j["old_calls"][function] = n;
  j["first_switch"] = live_json(t.to_dispatchers);
  j["second_switch"] = live_json(t.to_new_code);
  return j;
}

void print_transition(const engine::TransitionReport& t) {
  size_t at_safe_point = 0;
  std::chrono::nanoseconds last{0};
  for (const auto& s : t.switched) {
    at_safe_point += s.at_safe_point;
    last = std::max(last, s.after);
  }
  fmt::print("safe point {}: {} threads switched, {} entering it, {} found idle between requests; the last after {}; "
             "transition {}\n",
             t.safe_point, t.switched.size(), at_safe_point, t.switched.size() - at_safe_point, format_duration(last),
             format_duration(t.length));
  std::string calls;
  for (const auto& [function, n] : t.old_calls) calls += fmt::format("{}{} {}", calls.empty() ? "" : ", ", function, n);
  fmt::print("  calls that ran the version being replaced during the transition: {}\n", calls);
}

}  // namespace suture::cli
