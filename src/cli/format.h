// Small formatting helpers shared by the verbs.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace suture::cli {

inline std::string format_duration(std::chrono::nanoseconds d) {
  double us = static_cast<double>(d.count()) / 1000.0;
  if (us < 1000) return fmt::format("{:.0f} us", us);
  if (us < 1'000'000) return fmt::format("{:.2f} ms", us / 1000.0);
  return fmt::format("{:.2f} s", us / 1'000'000.0);
}

std::string format_time(uint64_t unix_seconds);

}  // namespace suture::cli
