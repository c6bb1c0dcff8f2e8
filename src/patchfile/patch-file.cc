// Writing and reading patch files (the layout is in patch-file.h).
//
// The problem: a patch file is the one input that travels between machines and
// people, so parse() treats it as hostile. Anything it lets through is indexed
// freely by the linker and the engine, inside a process somebody cares about.
//
// The approach: check in layers, from the outside in, and let each layer run only
// once the one around it holds, so the message names the outermost defect:
//   1. the header: magic, version, lengths against the limits and against the
//      bytes actually there (a truncated download says so, in those words);
//   2. the checksum over metadata and object (FNV-1a: it catches accidents, not
//      adversaries; authenticity would be a signature, in a layer of its own);
//   3. the metadata: nesting depth first (so a hostile file cannot make the JSON
//      parser build a million-deep tree), then syntax, then every field's type;
//   4. values: hex ids, sizes, counts, duplicates;
//   5. the object, through elf::ElfFile::parse, and finally the cross-references
//      from the metadata into it (replacement functions, bindings).
//
// Metadata is JSON because people read it (`suture inspect`, or just `less`) and
// because unknown keys can be ignored, so a later minor addition does not break an
// older reader; incompatible changes bump the header version instead. Rejected: a
// binary metadata encoding (smaller, but every field would need its own bounds
// code, which is where parsers go wrong) and an ELF note section inside the object
// (it would tie the metadata to one object, and a reader would need the ELF layer
// before it can even say which target the patch is for).
#include "patchfile/patch-file.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>
#include <utility>

#include "common/error.h"
#include "common/fnv1a.h"
#include "common/read-file.h"
#include "elf/elf-file.h"

namespace suture::patchfile {

namespace {

constexpr char magic[8] = {'S', 'U', 'T', 'U', 'R', 'E', 'P', 'T'};
constexpr uint32_t current_version = 1;
constexpr size_t header_size = 32;
constexpr uint64_t max_metadata = 16u << 20;
constexpr uint64_t max_object = 256u << 20;
constexpr size_t max_replacements = 100000;
constexpr size_t max_bindings = 100000;
// Our own metadata nests three deep; anything far deeper is an attack on the parser.
constexpr int max_nesting = 32;
// Bounds on what the object may ask the linker to reserve, so that size and
// alignment arithmetic further down cannot overflow.
constexpr uint64_t max_allocated = 1u << 30;
constexpr uint64_t max_alignment = 1u << 20;

uint64_t checksum(std::span<const uint8_t> bytes) {
  Fnv1a fnv;
  fnv.add(bytes);
  return fnv.value();
}

void put_le(std::vector<uint8_t>& out, size_t offset, uint64_t value, size_t width) {
  for (size_t i = 0; i < width; ++i) out[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t get_le(std::span<const uint8_t> bytes, size_t offset, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) value |= uint64_t{bytes[offset + i]} << (8 * i);
  return value;
}

bool is_hex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// How a field is named in messages: "replacements[3].new_symbol".
std::string field_name(std::string_view where, std::string_view key) {
  return where.empty() ? std::string(key) : fmt::format("{}.{}", where, key);
}

class Parser {
 public:
  Parser(std::span<const uint8_t> bytes, std::string_view origin) : bytes_(bytes), origin_(origin) {}

  Patch parse() {
    Patch patch;
    auto [metadata, object] = check_envelope(patch);
    read_metadata(metadata, patch);
    check_values(patch);
    patch.object.assign(object.begin(), object.end());
    check_object(patch);
    return patch;
  }

 private:
  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> format, Args&&... args) const {
    throw Error(fmt::format("{}: {}", origin_, fmt::format(format, std::forward<Args>(args)...)));
  }

  // Layers 1 and 2: the header and the checksum. Returns metadata and object.
  std::pair<std::string_view, std::span<const uint8_t>> check_envelope(Patch& patch) const {
    size_t size = bytes_.size();
    if (!std::equal(bytes_.begin(), bytes_.begin() + std::min(size, sizeof magic), std::begin(magic))) {
      bad("not a suture patch file (bad magic)");
    }
    if (size < header_size) bad("truncated: {} bytes, but the header alone is {}", size, header_size);

    uint64_t version = get_le(bytes_, 8, 4);
    if (version > current_version) {
      bad("format version {} was written by a newer suture (this one reads version {})", version,
          current_version);
    }
    if (version == 0) bad("format version 0 does not exist");
    patch.format_version = static_cast<uint32_t>(version);

    uint64_t meta_len = get_le(bytes_, 12, 4);
    uint64_t object_len = get_le(bytes_, 16, 8);
    uint64_t expected_sum = get_le(bytes_, 24, 8);
    if (meta_len > max_metadata) {
      bad("header says {} bytes of metadata, more than the limit of {}", meta_len, max_metadata);
    }
    if (object_len > max_object) {
      bad("header says {} bytes of object, more than the limit of {}", object_len, max_object);
    }

    uint64_t body = size - header_size;
    if (body < meta_len) bad("truncated: header says {} bytes of metadata, file has {}", meta_len, body);
    if (body - meta_len < object_len) {
      bad("truncated: header says {} bytes of object, file has {}", object_len, body - meta_len);
    }
    if (body - meta_len > object_len) {
      bad("{} stray bytes after the object (header says {} bytes of object)", body - meta_len - object_len,
          object_len);
    }

    uint64_t actual_sum = checksum(bytes_.subspan(header_size));
    if (actual_sum != expected_sum) {
      bad("checksum mismatch (header says {:016x}, contents hash to {:016x}): the file is corrupt",
          expected_sum, actual_sum);
    }
    auto metadata = bytes_.subspan(header_size, meta_len);
    return {{reinterpret_cast<const char*>(metadata.data()), metadata.size()},
            bytes_.subspan(header_size + meta_len)};
  }

  // Layer 3: JSON syntax, shape and the type of every field.
  void read_metadata(std::string_view text, Patch& patch) const {
    check_nesting(text);
    nlohmann::json root;
    try {
      root = nlohmann::json::parse(text.begin(), text.end());
    } catch (const nlohmann::json::exception& error) {
      bad("metadata: not valid JSON: {}", error.what());
    }
    if (!root.is_object()) bad("metadata: expected a JSON object, found {}", root.type_name());

    uint64_t version = number(root, "", "format_version");
    if (version != patch.format_version) {
      bad("metadata: format_version {} disagrees with the header's version {}", version,
          patch.format_version);
    }
    patch.id = string(root, "", "id");
    patch.name = string(root, "", "name");
    patch.target_build_id = string(root, "", "target_build_id");
    patch.target_name = string(root, "", "target_name");
    patch.created_unix = number(root, "", "created_unix");

    const auto& replacements = array(root, "", "replacements");
    if (replacements.size() > max_replacements) {
      bad("metadata: {} replacements, more than the limit of {}", replacements.size(), max_replacements);
    }
    patch.replacements.reserve(replacements.size());
    for (size_t i = 0; i < replacements.size(); ++i) {
      std::string where = fmt::format("replacements[{}]", i);
      const auto& entry = object(replacements[i], where);
      Replacement& replacement = patch.replacements.emplace_back();
      replacement.spelling = string(entry, where, "spelling");
      replacement.symbol = string(entry, where, "symbol");
      replacement.file = string(entry, where, "file");
      replacement.target_value = number(entry, where, "target_value");
      replacement.target_size = number(entry, where, "target_size");
      replacement.new_symbol = string(entry, where, "new_symbol");
      uint64_t preserve = number(entry, where, "preserve");
      if (preserve & ~uint64_t{kPreservableRegisters})
        bad("metadata: {}.preserve: {:#x} names registers that are not caller-saved", where, preserve);
      replacement.preserve = static_cast<uint32_t>(preserve);
      replacement.stack_argument_bytes = number(entry, where, "stack_argument_bytes");
      if (replacement.stack_argument_bytes > max_stack_argument_bytes)
        bad("metadata: {}.stack_argument_bytes: {} is more than {}", where, replacement.stack_argument_bytes,
            max_stack_argument_bytes);
    }

    const auto& bindings = array(root, "", "bindings");
    if (bindings.size() > max_bindings) {
      bad("metadata: {} bindings, more than the limit of {}", bindings.size(), max_bindings);
    }
    patch.bindings.reserve(bindings.size());
    for (size_t i = 0; i < bindings.size(); ++i) {
      std::string where = fmt::format("bindings[{}]", i);
      const auto& entry = object(bindings[i], where);
      Binding& binding = patch.bindings.emplace_back();
      binding.local = string(entry, where, "local");
      binding.symbol = string(entry, where, "symbol");
      binding.file = string(entry, where, "file");
    }
  }

  // Counts brackets outside strings; the JSON parser itself catches the rest.
  void check_nesting(std::string_view text) const {
    int depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (char c : text) {
      if (in_string) {
        if (escaped) {
          escaped = false;
        } else if (c == '\\') {
          escaped = true;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        if (++depth > max_nesting) bad("metadata: nested more than {} deep", max_nesting);
      } else if (c == ']' || c == '}') {
        --depth;
      }
    }
  }

  const nlohmann::json& member(const nlohmann::json& parent, std::string_view where, const char* key) const {
    auto found = parent.find(key);
    if (found == parent.end()) bad("metadata: {}: missing", field_name(where, key));
    return *found;
  }

  const nlohmann::json& object(const nlohmann::json& value, std::string_view where) const {
    if (!value.is_object()) bad("metadata: {}: expected an object, found {}", where, value.type_name());
    return value;
  }

  const nlohmann::json& array(const nlohmann::json& parent, std::string_view where, const char* key) const {
    const auto& value = member(parent, where, key);
    if (!value.is_array()) {
      bad("metadata: {}: expected an array, found {}", field_name(where, key), value.type_name());
    }
    return value;
  }

  std::string string(const nlohmann::json& parent, std::string_view where, const char* key) const {
    const auto& value = member(parent, where, key);
    if (!value.is_string()) {
      bad("metadata: {}: expected a string, found {}", field_name(where, key), value.type_name());
    }
    return value.get<std::string>();
  }

  uint64_t number(const nlohmann::json& parent, std::string_view where, const char* key) const {
    const auto& value = member(parent, where, key);
    // Non-negative integers that fit in 64 bits are the only "unsigned" JSON numbers.
    if (!value.is_number_unsigned()) {
      bad("metadata: {}: expected a non-negative integer, found {}", field_name(where, key),
          value.is_number() ? value.dump() : std::string(value.type_name()));
    }
    return value.get<uint64_t>();
  }

  // Layer 4: values that have the right type but make no sense.
  void check_values(const Patch& patch) const {
    if (patch.id.size() != 16 || !is_hex(patch.id)) {
      bad("metadata: id '{}' is not 16 lowercase hex digits", patch.id);
    }
    const auto& build_id = patch.target_build_id;
    if (build_id.empty() || build_id.size() % 2 != 0 || build_id.size() > 256 || !is_hex(build_id)) {
      bad("metadata: target_build_id '{}' is not a build-id (an even number of lowercase hex digits)",
          build_id);
    }

    std::set<std::pair<std::string_view, std::string_view>> replaced;
    for (size_t i = 0; i < patch.replacements.size(); ++i) {
      const Replacement& r = patch.replacements[i];
      if (r.symbol.empty()) bad("metadata: replacements[{}]: symbol is empty", i);
      if (r.new_symbol.empty()) bad("metadata: replacements[{}] ({}): new_symbol is empty", i, r.symbol);
      if (r.target_size == 0) bad("metadata: replacements[{}] ({}): target_size is 0", i, r.symbol);
      if (r.target_value + r.target_size < r.target_value) {
        bad("metadata: replacements[{}] ({}): target_value {:#x} + target_size {} overflows", i, r.symbol,
            r.target_value, r.target_size);
      }
      if (!replaced.emplace(r.symbol, r.file).second) {
        bad("metadata: replacements[{}]: {}{}{} is replaced twice", i, r.file, r.file.empty() ? "" : ":",
            r.symbol);
      }
    }

    std::set<std::string_view> bound;
    for (size_t i = 0; i < patch.bindings.size(); ++i) {
      const Binding& b = patch.bindings[i];
      if (b.local.empty()) bad("metadata: bindings[{}]: local is empty", i);
      if (b.symbol.empty()) bad("metadata: bindings[{}] ({}): symbol is empty", i, b.local);
      if (!bound.emplace(b.local).second) bad("metadata: bindings[{}]: '{}' is bound twice", i, b.local);
    }
  }

  // Layer 5: the object, and the metadata's references into it.
  void check_object(const Patch& patch) const {
    std::string name = fmt::format("{}: object", origin_);
    auto object = elf::ElfFile::parse(patch.object, name);
    if (object.type() != ET_REL) bad("object: ELF type {} is not a relocatable object", object.type());

    uint64_t allocated = 0;
    for (const elf::Section& section : object.sections()) {
      if (!(section.flags & SHF_ALLOC)) continue;
      if (section.align > max_alignment) {
        bad("object: section {}: alignment {} is more than the limit of {}", section.name, section.align,
            max_alignment);
      }
      if (section.size > max_allocated || (allocated += section.size) > max_allocated) {
        bad("object: allocated sections take more than {} bytes", max_allocated);
      }
    }

    struct Uses {
      const elf::Symbol* function = nullptr;  // first definition of a function
      const elf::Symbol* other = nullptr;     // first definition of anything else
      bool undefined = false;
    };
    std::unordered_map<std::string_view, Uses> by_name;
    by_name.reserve(object.symbols().size());
    for (const elf::Symbol& symbol : object.symbols()) {
      if (symbol.index == 0 || symbol.name.empty() || symbol.type == STT_FILE || symbol.type == STT_SECTION) {
        continue;
      }
      Uses& uses = by_name[symbol.name];
      if (!symbol.defined()) {
        uses.undefined = true;
      } else if (is_function(object, symbol)) {
        if (!uses.function) uses.function = &symbol;
      } else if (!uses.other) {
        uses.other = &symbol;
      }
    }

    for (size_t i = 0; i < patch.replacements.size(); ++i) {
      const Replacement& r = patch.replacements[i];
      auto found = by_name.find(r.new_symbol);
      if (found == by_name.end()) {
        bad("replacements[{}] ({}): '{}' is not in the object", i, r.spelling, r.new_symbol);
      }
      if (const elf::Symbol* function = found->second.function) {
        const elf::Section& section = object.sections()[function->shndx];  // checked by ElfFile
        if (function->value > section.size || section.size - function->value < function->size) {
          bad("replacements[{}] ({}): '{}' ({:#x}, {} bytes) lies outside its section {}", i, r.spelling,
              r.new_symbol, function->value, function->size, section.name);
        }
        continue;
      }
      if (found->second.other) {
        bad("replacements[{}] ({}): '{}' is not a function defined in a code section of the object", i,
            r.spelling, r.new_symbol);
      }
      bad("replacements[{}] ({}): '{}' is not defined in the object", i, r.spelling, r.new_symbol);
    }

    for (size_t i = 0; i < patch.bindings.size(); ++i) {
      const Binding& b = patch.bindings[i];
      auto found = by_name.find(b.local);
      // A binding nothing refers to is harmless (the code using it was optimised away).
      if (found == by_name.end() || found->second.undefined) continue;
      bad("bindings[{}]: the object defines '{}' itself, so it cannot be bound to the target's '{}'", i,
          b.local, b.symbol);
    }
  }

  // A replacement must be code: STT_FUNC, or any symbol in an executable section
  // (hand-written assembly often has no type). An IFUNC would redirect callers to
  // its resolver, and an absolute or common symbol has no code behind it.
  static bool is_function(const elf::ElfFile& object, const elf::Symbol& symbol) {
    if (symbol.type == STT_GNU_IFUNC || symbol.shndx >= SHN_LORESERVE) return false;
    const elf::Section& section = object.sections()[symbol.shndx];  // checked by ElfFile
    return symbol.type == STT_FUNC || (section.flags & SHF_EXECINSTR);
  }

  std::span<const uint8_t> bytes_;
  std::string_view origin_;
};

}  // namespace

std::vector<uint8_t> serialize(const Patch& patch) {
  nlohmann::ordered_json metadata;
  metadata["format_version"] = patch.format_version;
  metadata["id"] = patch.id;
  metadata["name"] = patch.name;
  metadata["target_build_id"] = patch.target_build_id;
  metadata["target_name"] = patch.target_name;
  metadata["created_unix"] = patch.created_unix;
  auto& replacements = metadata["replacements"] = nlohmann::ordered_json::array();
  for (const Replacement& r : patch.replacements) {
    replacements.push_back({{"spelling", r.spelling},
                            {"symbol", r.symbol},
                            {"file", r.file},
                            {"target_value", r.target_value},
                            {"target_size", r.target_size},
                            {"new_symbol", r.new_symbol},
                            {"preserve", r.preserve},
                            {"stack_argument_bytes", r.stack_argument_bytes}});
  }
  auto& bindings = metadata["bindings"] = nlohmann::ordered_json::array();
  for (const Binding& b : patch.bindings) {
    bindings.push_back({{"local", b.local}, {"symbol", b.symbol}, {"file", b.file}});
  }

  std::string text;
  try {
    text = metadata.dump(2);
  } catch (const nlohmann::json::exception& error) {
    // Symbol names are bytes, JSON strings are UTF-8.
    fail("patch {}: cannot write its metadata: {}", patch.name, error.what());
  }
  if (text.size() > max_metadata) {
    fail("patch {}: {} bytes of metadata, more than the limit of {}", patch.name, text.size(), max_metadata);
  }
  if (patch.object.size() > max_object) {
    fail("patch {}: {} bytes of object, more than the limit of {}", patch.name, patch.object.size(),
         max_object);
  }

  std::vector<uint8_t> out(header_size + text.size() + patch.object.size());
  std::memcpy(out.data(), magic, sizeof magic);
  put_le(out, 8, patch.format_version, 4);
  put_le(out, 12, text.size(), 4);
  put_le(out, 16, patch.object.size(), 8);
  std::memcpy(out.data() + header_size, text.data(), text.size());
  if (!patch.object.empty()) {
    std::memcpy(out.data() + header_size + text.size(), patch.object.data(), patch.object.size());
  }
  put_le(out, 24, checksum(std::span<const uint8_t>(out).subspan(header_size)), 8);
  return out;
}

Patch parse(std::span<const uint8_t> bytes, std::string_view origin) { return Parser(bytes, origin).parse(); }

void assign_id(Patch& patch) {
  Fnv1a fnv;
  fnv.add(patch.object);
  fnv.add_string(patch.target_build_id);
  fnv.add_u64(patch.replacements.size());
  for (const Replacement& r : patch.replacements) {
    fnv.add_string(r.spelling);
    fnv.add_string(r.symbol);
    fnv.add_string(r.file);
    fnv.add_string(r.new_symbol);
    fnv.add_u64(r.preserve);
    fnv.add_u64(r.stack_argument_bytes);
  }
  fnv.add_u64(patch.bindings.size());
  for (const Binding& b : patch.bindings) {
    fnv.add_string(b.local);
    fnv.add_string(b.symbol);
    fnv.add_string(b.file);
  }
  patch.id = fmt::format("{:016x}", fnv.value());
}

Patch read_file(const std::string& path) {
  return parse(read_whole_file(path, header_size + max_metadata + max_object, "a patch file"), path);
}

// Written next to the destination and renamed over it, so that a reader (or a
// crash) sees the old file or the new one, never half of one.
void write_file(const Patch& patch, const std::string& path) {
  auto bytes = serialize(patch);
  std::string temp = path + ".tmp.XXXXXX";
  int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) fail("{}: cannot create a temporary file next to it: {}", path, errno_text(errno));
  auto give_up = [&](const char* what) {
    int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    fail("{}: cannot {}: {}", path, what, errno_text(err));
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t wrote = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) give_up("write");
    done += static_cast<size_t>(wrote);
  }
  if (fchmod(fd, 0644) != 0) give_up("set permissions");
  if (fsync(fd) != 0) give_up("flush");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    fail("{}: cannot write: {}", path, errno_text(err));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(temp.c_str());
    fail("{}: cannot rename {} over it: {}", path, temp, errno_text(err));
  }
}

bool looks_like_patch(std::span<const uint8_t> first_bytes) {
  return first_bytes.size() >= sizeof magic && std::memcmp(first_bytes.data(), magic, sizeof magic) == 0;
}

}  // namespace suture::patchfile
