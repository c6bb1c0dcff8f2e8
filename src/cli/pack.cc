#include <filesystem>

#include <fmt/format.h>

#include "build/pack.h"
#include "cli/verbs.h"

namespace suture::cli {

Run add_pack(CLI::App& app) {
  auto options = std::make_shared<build::PackOptions>();
  auto output = std::make_shared<std::string>();
  app.add_option("--target", options->target, "the executable or shared library the patch is for")->required();
  app.add_option("object", options->object, "the patch object (cc -c -fPIC fix.c)")->required();
  app.add_option("-o,--output", *output, "the patch file to write (default: OBJECT with .sut)");
  app.add_option("--name", options->name, "a label for the patch");
  app.add_option("-L,--library-path", options->library_path, "where to find the target's libraries");
  app.add_flag("--allow-undefined", options->allow_undefined, "leave symbols not found now to apply time");
  return [options, output] {
    auto result = build::pack(*options);
    std::string out = *output;
    if (out.empty()) out = std::filesystem::path(options->object).replace_extension(".sut").string();
    patchfile::write_file(result.patch, out);
    for (const auto& note : result.notes) fmt::print(stderr, "suture: note: {}\n", note);
    fmt::print("wrote {}: patch {} for {} (build-id {}), {} function{}\n", out, result.patch.id,
               result.patch.target_name, result.patch.target_build_id, result.patch.replacements.size(),
               result.patch.replacements.size() == 1 ? "" : "s");
    for (const auto& r : result.patch.replacements)
      fmt::print("  {} -> {}{}\n", r.symbol, r.new_symbol, r.file.empty() ? "" : " (static, " + r.file + ")");
    return 0;
  };
}

}  // namespace suture::cli
