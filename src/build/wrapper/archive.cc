#include "build/wrapper/archive.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view regular_magic = "!<arch>\n";
constexpr std::string_view thin_magic = "!<thin>\n";
constexpr size_t header_size = 60;  // name[16] date[12] uid[6] gid[6] mode[8] size[10] fmag[2]

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot read", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string field(const std::vector<uint8_t>& bytes, size_t at, size_t size) {
  std::string s(reinterpret_cast<const char*>(bytes.data() + at), size);
  return s.substr(0, s.find_last_not_of(' ') + 1);
}

}  // namespace

bool is_archive(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[8] = {};
  if (!in.read(magic, sizeof magic)) return false;
  std::string_view m(magic, sizeof magic);
  return m == regular_magic || m == thin_magic;
}

std::vector<ArchiveMember> read_archive(const std::string& path) {
  auto bytes = read_bytes(path);
  std::string_view magic(reinterpret_cast<const char*>(bytes.data()), std::min<size_t>(bytes.size(), 8));
  bool thin = magic == thin_magic;
  if (magic != regular_magic && !thin) fail("{}: not an ar archive", path);
  std::string long_names;
  std::vector<ArchiveMember> members;
  size_t at = 8;
  while (at < bytes.size()) {
    if (at + header_size > bytes.size()) fail("{}: member header at {:#x} is cut short", path, at);
    if (bytes[at + 58] != '`' || bytes[at + 59] != '\n') fail("{}: bad member header at {:#x}", path, at);
    std::string name = field(bytes, at, 16);
    std::string size_text = field(bytes, at + 48, 10);
    size_t size = 0;
    for (char c : size_text) {
      if (c < '0' || c > '9') fail("{}: member size '{}' at {:#x} is not a number", path, size_text, at);
      size = size * 10 + static_cast<size_t>(c - '0');
    }
    size_t data = at + header_size;
    // The symbol table and the long-name table always hold their bytes, also in
    // thin archives; other members of a thin archive hold none.
    bool special = name == "/" || name == "//" || name == "/SYM64/";
    size_t stored = thin && !special ? 0 : size;
    if (data + stored > bytes.size()) fail("{}: member '{}' at {:#x} is cut short", path, name, at);
    if (name == "//") {
      long_names.assign(reinterpret_cast<const char*>(bytes.data() + data), size);
    } else if (!special) {
      if (name.size() > 1 && name[0] == '/' && std::isdigit(static_cast<unsigned char>(name[1]))) {
        size_t offset = std::stoul(name.substr(1));
        if (offset >= long_names.size()) fail("{}: long name offset {} at {:#x} is out of range", path, offset, at);
        auto end = long_names.find('\n', offset);
        name = long_names.substr(offset, end == std::string::npos ? std::string::npos : end - offset);
      }
      if (!name.empty() && name.back() == '/') name.pop_back();
      ArchiveMember member;
      member.name = name;
      if (thin) member.path = (fs::path(path).parent_path() / name).lexically_normal().string();
      else member.bytes.assign(bytes.begin() + static_cast<long>(data), bytes.begin() + static_cast<long>(data + size));
      if (thin) member.name = fs::path(name).filename().string();
      members.push_back(std::move(member));
    }
    at = data + stored + (stored % 2);  // members are 2-byte aligned
  }
  return members;
}

bool archive_holds(const std::string& archive, const std::string& object) {
  auto name = fs::path(object).filename().string();
  std::vector<uint8_t> object_bytes;
  bool read = false;
  for (const auto& m : read_archive(archive)) {
    if (m.name != name) continue;
    if (!m.path.empty()) {
      std::error_code ec;
      if (fs::equivalent(m.path, object, ec)) return true;
      continue;
    }
    if (!read) {
      object_bytes = read_bytes(object);
      read = true;
    }
    if (m.bytes == object_bytes) return true;
  }
  return false;
}

}  // namespace suture::build::wrapper
