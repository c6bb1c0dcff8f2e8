// Finding the separate debug file of a stripped binary, where its .symtab lives
// (the statics a patch may need to call or replace). Two conventions exist, tried
// in the order debuggers use:
//   1. by build-id: /usr/lib/debug/.build-id/xx/yyyy.debug, unambiguous, and what
//      Debian's -dbg/-dbgsym packages install;
//   2. by .gnu_debuglink (a file name plus CRC): next to the binary, in .debug/
//      beside it, or under /usr/lib/debug/ followed by the binary's directory.
// The CRC is not checked: reading a whole debug file to checksum it costs more
// than the caller's own check, which compares build-ids after parsing.
#include <filesystem>
#include <system_error>

#include "elf/elf-file.h"

namespace suture::elf {

namespace {

constexpr std::string_view debug_root = "/usr/lib/debug";

bool is_file(const std::filesystem::path& path) {
  std::error_code error;
  return std::filesystem::is_regular_file(path, error);
}

// The file name stored in .gnu_debuglink, if it is a sane one.
std::optional<std::string> debuglink_name(const ElfFile& file) {
  const Section* section = file.find_section(".gnu_debuglink");
  if (!section) return std::nullopt;
  auto bytes = file.section_bytes(*section);
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  size_t end = text.find('\0');
  if (end == std::string_view::npos || end == 0) return std::nullopt;
  std::string name(text.substr(0, end));
  if (name.find('/') != std::string::npos || name == "." || name == "..") return std::nullopt;
  return name;
}

}  // namespace

std::optional<std::string> find_debug_file(const ElfFile& file, const std::string& path) {
  namespace fs = std::filesystem;

  const std::string& id = file.build_id();
  if (id.size() > 2) {
    fs::path candidate = fs::path(debug_root) / ".build-id" / id.substr(0, 2) / (id.substr(2) + ".debug");
    if (is_file(candidate)) return candidate.string();
  }

  auto name = debuglink_name(file);
  if (!name) return std::nullopt;
  std::error_code error;
  fs::path binary = fs::absolute(path, error);
  if (error) return std::nullopt;
  binary = binary.lexically_normal();
  fs::path dir = binary.parent_path();
  // relative_path() drops the leading '/', so the directory nests under the root.
  for (const fs::path& candidate :
       {dir / *name, dir / ".debug" / *name, fs::path(debug_root) / dir.relative_path() / *name}) {
    if (candidate == binary) continue;  // a debuglink naming the binary itself
    if (is_file(candidate)) return candidate.string();
  }
  return std::nullopt;
}

}  // namespace suture::elf
