#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/format.h"
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
  };
  auto args = std::make_shared<Args>();
  app.add_option("pid", args->pid, "the patched process")->required();
  app.add_option("ids", args->ids, "patches to revert (all when none); a unique prefix is enough");
  app.add_option("--timeout", args->timeout, "seconds to wait for threads to leave the patches' code")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", args->json, "print the result as JSON");
  return [args] {
    engine::RevertOptions options;
    options.timeout = std::chrono::milliseconds(static_cast<int64_t>(args->timeout * 1000));
    auto report = engine::revert(args->pid, args->ids, options);
    if (args->json) {
      nlohmann::json j;
      j["pid"] = args->pid;
      j["reverted"] = nlohmann::json::array();
      for (const auto& r : report.reverted) j["reverted"].push_back(record_json(r));
      j["pause_us"] = report.pause.count() / 1000;
      j["total_us"] = report.total.count() / 1000;
      j["threads"] = report.threads;
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    for (const auto& r : report.reverted)
      fmt::print("reverted {} ({}) from {}: {} function{}\n", r.id, r.name, r.object_path, r.redirects.size(),
                 r.redirects.size() == 1 ? "" : "s");
    fmt::print("pause {} ({} threads held), total {}\n", format_duration(report.pause), report.threads,
               format_duration(report.total));
    return 0;
  };
}

}  // namespace suture::cli
