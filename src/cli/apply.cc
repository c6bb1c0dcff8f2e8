#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/format.h"
#include "cli/live-report.h"
#include "cli/record-json.h"
#include "cli/verbs.h"
#include "engine/engine.h"

namespace suture::cli {

Run add_apply(CLI::App& app) {
  struct Args {
    pid_t pid = 0;
    std::vector<std::string> patches;
    double timeout = 10;
    bool json = false;
    engine::Mode mode = engine::Mode::stop_the_world;
    std::string safe_point;
  };
  auto args = std::make_shared<Args>();
  app.add_option("pid", args->pid, "the process to patch")->required();
  app.add_option("patches", args->patches, "patch files, or directories of them")->required();
  app.add_option("--timeout", args->timeout, "seconds to wait for threads to leave the functions being replaced")
      ->check(CLI::PositiveNumber);
  add_mode_option(app, args->mode);
  app.add_option("--safe-point", args->safe_point,
                 "zero-suspend: each thread switches to the new code only when it next enters this function (e.g. "
                 "the start of request processing), so a request runs on one version");
  app.add_flag("--json", args->json, "print the result as JSON");
  return [args] {
    auto inputs = engine::load_patch_inputs(args->patches);
    engine::ApplyOptions options;
    options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args->timeout * 1000));
    options.mode = args->mode;
    options.safe_point = args->safe_point;
    auto report = engine::apply(args->pid, inputs, options);
    if (args->json) {
      nlohmann::json j;
      j["pid"] = args->pid;
      j["applied"] = nlohmann::json::array();
      for (const auto& r : report.applied) j["applied"].push_back(record_json(r));
      j["skipped"] = nlohmann::json::array();
      for (const auto& s : report.skipped) j["skipped"].push_back({{"file", s.origin}, {"reason", s.reason}});
      j["pause_us"] = report.pause.count() / 1000;
      j["total_us"] = report.total.count() / 1000;
      j["threads"] = report.threads;
      j["mode"] = mode_name(report.mode);
      if (report.mode == engine::Mode::zero_suspend) j["zero_suspend"] = live_json(report.live);
      if (report.transition) j["transition"] = transition_json(*report.transition);
      j["attempts"] = report.attempts;
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    for (const auto& s : report.skipped) fmt::print("skipped {}: {}\n", s.origin, s.reason);
    for (const auto& r : report.applied) {
      fmt::print("applied {} ({}) to {}: {} function{}\n", r.id, r.name, r.object_path, r.redirects.size(),
                 r.redirects.size() == 1 ? "" : "s");
      for (const auto& d : r.redirects) fmt::print("  {} {} -> {}\n", d.name, d.function, d.destination);
    }
    if (report.mode == engine::Mode::zero_suspend) {
      print_live(report.live, "old");
      if (report.transition) print_transition(*report.transition);
      fmt::print("total {}\n", format_duration(report.total));
      return 0;
    }
    fmt::print("pause {} ({} threads held, {} check{}), total {}\n", format_duration(report.pause), report.threads,
               report.attempts, report.attempts == 1 ? "" : "s", format_duration(report.total));
    return 0;
  };
}

}  // namespace suture::cli
