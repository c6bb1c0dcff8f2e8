// Reading a whole regular file into memory, with errors that name the path.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace suture {

// Throws Error("PATH: cannot open: ..."), "PATH: not a regular file", or
// "PATH: N bytes, too large for WHAT (at most LIMIT)". A file that shrinks
// while being read yields the bytes that were there.
std::vector<uint8_t> read_whole_file(const std::string& path,
                                     uint64_t limit = std::numeric_limits<uint64_t>::max(),
                                     std::string_view what = "a file");

}  // namespace suture
