// suture: live patches for running programs.
#include <sys/resource.h>

#include <cstdio>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/verbs.h"
#include "common/error.h"
#include "common/interrupt.h"

int main(int argc, char** argv) {
  CLI::App app{"suture: repair and update running programs without restarting them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "suture 0.1.0");

  std::vector<std::pair<CLI::App*, suture::cli::Run>> verbs;
  auto add = [&](const char* name, const char* help, suture::cli::Run (*make)(CLI::App&)) {
    CLI::App* sub = app.add_subcommand(name, help);
    verbs.emplace_back(sub, make(*sub));
  };
  add("build", "build patch files from a source tree and a diff", suture::cli::add_build);
  add("pack", "check a patch object against a binary and write a patch file", suture::cli::add_pack);
  add("apply", "apply patches to a running process", suture::cli::add_apply);
  add("revert", "take applied patches back", suture::cli::add_revert);
  add("status", "list the patches applied to a process", suture::cli::add_status);
  add("inspect", "show what a patch file contains and targets", suture::cli::add_inspect);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  // SIGINT/SIGTERM while working on a live process: finish undoing, then exit.
  suture::install_interrupt_handlers();
  // A live switch keeps a /proc file open for each thread of the target (its
  // schedstat): a process of thousands of threads would take the usual soft
  // limit of 1024 descriptors, and with it the files suture opens next.
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  for (auto& [sub, run] : verbs) {
    if (!sub->parsed()) continue;
    try {
      return run();
    } catch (const suture::Interrupted& e) {
      fmt::print(stderr, "suture: {}\n", e.what());
      return 130;
    } catch (const suture::Error& e) {
      fmt::print(stderr, "suture: error: {}\n", e.what());
      return 1;
    } catch (const std::exception& e) {
      fmt::print(stderr, "suture: internal error: {}\n", e.what());
      return 70;
    }
  }
  return 2;
}
