// The consistency-mode option and the zero-suspend report, shared by apply and
// revert.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "engine/engine.h"

namespace suture::cli {

// --mode stop-the-world|zero-suspend
void add_mode_option(CLI::App& app, engine::Mode& mode);

const char* mode_name(engine::Mode mode);

nlohmann::json live_json(const consistency::LiveSwitchReport& live);

// Lines after the verb's summary: holds, steered calls, threads still running old code.
void print_live(const consistency::LiveSwitchReport& live, const char* old_code_name);

nlohmann::json transition_json(const engine::TransitionReport& transition);
void print_transition(const engine::TransitionReport& transition);

}  // namespace suture::cli
