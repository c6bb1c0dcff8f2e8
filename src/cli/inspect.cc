#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/format.h"
#include "cli/verbs.h"
#include "elf/elf-file.h"
#include "patchfile/patch-file.h"

namespace suture::cli {

Run add_inspect(CLI::App& app) {
  struct Args {
    std::string path;
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  app.add_option("patch", args->path, "the patch file")->required();
  app.add_flag("--json", args->json, "print as JSON");
  return [args] {
    auto patch = patchfile::read_file(args->path);
    auto object = elf::ElfFile::parse(patch.object, args->path);
    std::vector<std::string> undefined;
    for (const auto& s : object.symbols())
      if (s.index != 0 && !s.defined() && !s.name.empty()) undefined.push_back(s.name);
    if (args->json) {
      nlohmann::json j = {{"id", patch.id},
                          {"name", patch.name},
                          {"format_version", patch.format_version},
                          {"target", patch.target_name},
                          {"build_id", patch.target_build_id},
                          {"created", format_time(patch.created_unix)},
                          {"object_bytes", patch.object.size()},
                          {"undefined_symbols", undefined}};
      j["replacements"] = nlohmann::json::array();
      for (const auto& r : patch.replacements)
        j["replacements"].push_back({{"spelling", r.spelling}, {"symbol", r.symbol}, {"file", r.file},
                                     {"size", r.target_size}, {"new", r.new_symbol}});
      j["bindings"] = nlohmann::json::array();
      for (const auto& b : patch.bindings)
        j["bindings"].push_back({{"local", b.local}, {"symbol", b.symbol}, {"file", b.file}});
      fmt::print("{}\n", j.dump(2));
      return 0;
    }
    fmt::print("patch {} ({}), format {}\n", patch.id, patch.name, patch.format_version);
    fmt::print("target: {} build-id {}\n", patch.target_name, patch.target_build_id);
    fmt::print("created: {}\n", format_time(patch.created_unix));
    fmt::print("object: {} bytes\n", patch.object.size());
    fmt::print("replaces:\n");
    for (const auto& r : patch.replacements)
      fmt::print("  {} ({} bytes{}) -> {}\n", r.symbol, r.target_size, r.file.empty() ? "" : ", static in " + r.file,
                 r.new_symbol);
    if (!patch.bindings.empty()) {
      fmt::print("binds:\n");
      for (const auto& b : patch.bindings) fmt::print("  {} -> {}{}\n", b.local, b.file.empty() ? "" : b.file + ":", b.symbol);
    }
    if (!undefined.empty()) {
      std::string list;
      for (const auto& u : undefined) list += (list.empty() ? "" : ", ") + u;
      fmt::print("uses from the target: {}\n", list);
    }
    return 0;
  };
}

}  // namespace suture::cli
