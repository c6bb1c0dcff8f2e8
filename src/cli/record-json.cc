#include "cli/record-json.h"

#include "cli/format.h"

namespace suture::cli {

nlohmann::json record_json(const engine::PatchRecord& r) {
  nlohmann::json functions = nlohmann::json::array();
  for (const auto& d : r.redirects)
    functions.push_back({{"name", d.name},
                         {"old", fmt::format("{}", d.function)},
                         {"new", fmt::format("{}", d.destination)}});
  return {{"id", r.id},
          {"sequence", r.sequence},
          {"name", r.name},
          {"object", r.object_path},
          {"build_id", r.target_build_id},
          {"state", std::string(engine::to_string(r.state))},
          {"applied_unix", r.applied_unix},
          {"applied", format_time(r.applied_unix)},
          {"region", fmt::format("{}", r.region.start)},
          {"region_size", r.region.size},
          {"functions", functions}};
}

}  // namespace suture::cli
