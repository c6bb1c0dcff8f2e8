#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/format.h"
#include "cli/record-json.h"
#include "cli/verbs.h"
#include "engine/engine.h"

namespace suture::cli {

Run add_status(CLI::App& app) {
  struct Args {
    pid_t pid = 0;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("pid", args->pid, "the process")->required();
  app.add_flag("--json", args->json, "print the result as JSON");
  return [args] {
    auto report = engine::status(args->pid);
    if (args->json) {
      nlohmann::json j;
      j["pid"] = args->pid;
      j["patches"] = nlohmann::json::array();
      for (const auto& r : report.records) j["patches"].push_back(record_json(r));
      j["problems"] = report.problems;
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    for (const auto& p : report.problems) fmt::print(stderr, "suture: warning: {}\n", p);
    if (report.records.empty()) {
      fmt::print("process {}: no patches applied\n", args->pid);
      return 0;
    }
    fmt::print("{:<4} {:<16}  {:<20}  {:<9}  {:<19}  {}\n", "seq", "id", "object", "state", "applied", "functions");
    for (const auto& r : report.records) {
      std::string functions;
      for (const auto& d : r.redirects) functions += (functions.empty() ? "" : ", ") + d.name;
      fmt::print("{:<4} {:<16}  {:<20}  {:<9}  {:<19}  {}\n", r.sequence, r.id,
                 std::filesystem::path(r.object_path).filename().string(), engine::to_string(r.state),
                 format_time(r.applied_unix), functions);
    }
    return 0;
  };
}

}  // namespace suture::cli
