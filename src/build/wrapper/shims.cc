#include "build/wrapper/shims.h"

#include <filesystem>
#include <regex>
#include <set>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

}  // namespace

std::vector<std::string> shim_names(const std::string& search_path) {
  static const std::regex compiler_name(R"(^([a-z0-9_]+-linux-gnu-)?(cc|c\+\+|gcc|g\+\+|clang|clang\+\+)(-[0-9.]+)?$)");
  std::set<std::string> names;
  size_t start = 0;
  while (start <= search_path.size()) {
    auto colon = search_path.find(':', start);
    std::string dir = search_path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    start = colon == std::string::npos ? search_path.size() + 1 : colon + 1;
    std::error_code ec;
    for (fs::directory_iterator it(dir.empty() ? "." : dir, ec), end; !ec && it != end; it.increment(ec)) {
      auto name = it->path().filename().string();
      if (std::regex_match(name, compiler_name) || name == "ccache" || name == "sccache" || name == "distcc")
        names.insert(name);
    }
  }
  return {names.begin(), names.end()};
}

void make_shims(const std::string& dir, const std::string& wrapper, const std::vector<std::string>& names) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create: {}", dir, ec.message());
  for (const auto& name : names) {
    fs::path link = fs::path(dir) / name;
    fs::remove(link, ec);
    fs::create_symlink(wrapper, link, ec);
    if (ec) fail("{}: cannot create link: {}", link.string(), ec.message());
  }
}

}  // namespace suture::build::wrapper
