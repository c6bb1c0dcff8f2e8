// shims: the directory of links named like compilers that `suture build` puts
// first on PATH, for projects that find their compiler by name (cc, gcc,
// x86_64-linux-gnu-g++-12...) rather than through $CC.
#pragma once

#include <string>
#include <vector>

namespace suture::build::wrapper {

// The names worth a link: the usual drivers and launchers, and every versioned
// or target-prefixed gcc/g++/clang/clang++/cc/c++ on SEARCH_PATH; only names
// that exist there (a link without a real program behind it would only turn
// "command not found" into a less helpful message).
std::vector<std::string> shim_names(const std::string& search_path);

// Creates DIR (if needed) with one symbolic link per name pointing to WRAPPER,
// replacing links of those names already there. Throws Error naming the path.
void make_shims(const std::string& dir, const std::string& wrapper, const std::vector<std::string>& names);

}  // namespace suture::build::wrapper
