// The page: the unit of mappings, protections and whole-page reads of the
// target's memory (x86-64, 4 KiB).
#pragma once

#include <cstdint>

namespace suture {

inline constexpr uint64_t kPageSize = 4096;

// The start of the page `value` is in.
constexpr uint64_t page_down(uint64_t value) { return value & ~(kPageSize - 1); }
// `value` rounded up to a page boundary.
constexpr uint64_t page_up(uint64_t value) { return page_down(value + kPageSize - 1); }

}  // namespace suture
