#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/format.h"
#include "cli/live-report.h"
#include "cli/record-json.h"
#include "cli/verbs.h"
#include "engine/engine.h"

namespace suture::cli {

Run add_revert(CLI::App& app) {
  struct Args {
    pid_t pid = 0;
    std::vector<std::string> ids;
    double timeout = 10;
    bool json = false;
    engine::Mode mode = engine::Mode::stop_the_world;
    std::string safe_point;
  };
  auto args = std::make_shared<Args>();
  app.add_option("pid", args->pid, "the patched process")->required();
  app.add_option("ids", args->ids, "patches to revert (all when none); a unique prefix is enough");
  app.add_option("--timeout", args->timeout, "seconds to wait for threads to leave the patches' code")
      ->check(CLI::PositiveNumber);
  add_mode_option(app, args->mode);
  app.add_option("--safe-point", args->safe_point,
                 "zero-suspend: each thread goes back to the old code only when it next enters this function");
  app.add_flag("--json", args->json, "print the result as JSON");
  return [args] {
    engine::RevertOptions options;
    options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args->timeout * 1000));
    options.mode = args->mode;
    options.safe_point = args->safe_point;
    auto report = engine::revert(args->pid, args->ids, options);
    if (args->json) {
      nlohmann::json j;
      j["pid"] = args->pid;
      j["reverted"] = nlohmann::json::array();
      for (const auto& r : report.reverted) j["reverted"].push_back(record_json(r));
      j["pause_us"] = report.pause.count() / 1000;
      j["total_us"] = report.total.count() / 1000;
      j["threads"] = report.threads;
      j["mode"] = mode_name(report.mode);
      if (report.mode == engine::Mode::zero_suspend) j["zero_suspend"] = live_json(report.live);
      if (report.transition) j["transition"] = transition_json(*report.transition);
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    for (const auto& r : report.reverted)
      fmt::print("reverted {} ({}) from {}: {} function{}\n", r.id, r.name, r.object_path, r.redirects.size(),
                 r.redirects.size() == 1 ? "" : "s");
    if (report.mode == engine::Mode::zero_suspend) {
      print_live(report.live, "patched");
      if (report.transition) print_transition(*report.transition);
      fmt::print("total {}\n", format_duration(report.total));
      return 0;
    }
    fmt::print("pause {} ({} threads held), total {}\n", format_duration(report.pause), report.threads,
               format_duration(report.total));
    return 0;
  };
}

}  // namespace suture::cli
