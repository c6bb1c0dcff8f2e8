// One file per verb: each registers its options on the command line parser and
// returns the function that runs it. Verbs print; the engine and builder do.
#pragma once

#include <functional>

#include <CLI/CLI.hpp>

namespace suture::cli {

using Run = std::function<int()>;

Run add_pack(CLI::App& app);
Run add_apply(CLI::App& app);
Run add_revert(CLI::App& app);
Run add_status(CLI::App& app);
Run add_inspect(CLI::App& app);
Run add_build(CLI::App& app);

}  // namespace suture::cli
