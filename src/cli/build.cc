#include <fmt/format.h>

#include "build/build-patch.h"
#include "cli/verbs.h"

namespace suture::cli {

Run add_build(CLI::App& app) {
  auto options = std::make_shared<build::BuildOptions>();
  app.add_option("--source", options->source, "the source tree the running program was built from")->required();
  app.add_option("--output", options->output, "where to write the patch files")->required();
  app.add_option("--build", options->build, "the project's build command")->capture_default_str();
  app.add_option("--clean", options->clean, "run in the fresh copy before the original build ('' for none)")
      ->capture_default_str();
  app.add_option("--against", options->against, "the binary that runs (default: the same path in --source)");
  app.add_option("--cache", options->cache, "where original builds are kept");
  app.add_option("--wrapper", options->wrapper, "the suture-cc compiler wrapper");
  app.add_flag("-v,--verbose", options->verbose, "show the builds");
  app.add_option("diffs", options->diffs, "the fix, as unified diffs (patch -p1)")->required();
  return [options] {
    auto report = build::build_patches(*options);
    fmt::print("original build: {}\n", report.original_cached ? "reused from the cache" : "built");
    for (const auto& f : report.recompiled) fmt::print("recompiled: {}\n", f);
    for (const auto& f : report.replayed) fmt::print("replayed: {} (its original compile; the build left it stale)\n", f);
    for (const auto& f : report.build_files) fmt::print("build description: {}\n", f);
    for (const auto& f : report.outside_build) fmt::print("outside the build: {}\n", f);
    for (const auto& f : report.forgiven) fmt::print("not a change: {}\n", f);
    for (const auto& p : report.patches) {
      fmt::print("wrote {} for {}\n", p.path, p.binary);
      for (const auto& c : p.changed) fmt::print("  replaces {}\n", c);
      for (const auto& r : p.reasons) fmt::print("  includes {}\n", r);
      for (const auto& n : p.notes) fmt::print("  note: {}\n", n);
    }
    return 0;
  };
}

}  // namespace suture::cli
