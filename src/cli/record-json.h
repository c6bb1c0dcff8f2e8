// The JSON shape of an applied patch, shared by apply, revert and status --json.
#pragma once

#include <nlohmann/json.hpp>

#include "engine/patch-record.h"

namespace suture::cli {

nlohmann::json record_json(const engine::PatchRecord& record);

}  // namespace suture::cli
