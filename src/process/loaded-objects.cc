// Which ELF objects a process has loaded, where, and in which order.
//
// The dynamic linker's own list is the truth: the executable's PT_DYNAMIC
// holds DT_DEBUG, which glibc points at its struct r_debug at start-up, whose
// r_map heads the link_map list in symbol search order (executable, its
// DT_NEEDED libraries breadth first, dlopen()ed objects, the dynamic linker).
// From each link_map we take the load bias (l_addr) and l_ld, which lies inside
// the object's own mappings; that finds its file in /proc/PID/maps even when
// l_name is spelled differently from the maps path (/lib vs /usr/lib on a
// merged-/usr system) and tells apart two copies of one file. Matching maps
// by name alone would get both wrong. When DT_DEBUG is empty (a static binary,
// or a process caught before the dynamic linker ran) the maps are the only
// source and their address order stands in for the search order.
//
// Each file's program headers and build-id note are read with a few preads
// rather than by parsing the whole file: a large executable with debug info
// would otherwise cost tens of milliseconds here, before any patch is looked
// at. Only libc itself is parsed whole, and only when some object has TLS:
// glibc exports, for libthread_db, descriptors of struct link_map fields in its
// .dynsym (_thread_db_link_map_l_tls_modid / _l_tls_offset, GLIBC_PRIVATE),
// each a uint32_t[3] of {field size in bits, element count, offset in struct
// link_map}; on Debian 12's glibc 2.36 they read {64, 1, 1152} and
// {64, 1, 1144}. Reading the fields through them keeps us independent of the
// private layout of struct link_map, which changes between glibc releases.
#include "process/loaded-objects.h"

#include <elf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <set>
#include <thread>

#include "common/error.h"
#include "common/page.h"
#include "elf/elf-file.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {

constexpr size_t kMaxObjects = 65536;       // a longer link_map list is a corrupt (or cyclic) one
constexpr size_t kMaxDynamicEntries = 4096;

// Reads `out.size()` bytes at `offset` of a file image; false if it cannot.
using ReadAt = std::function<bool(uint64_t offset, std::span<uint8_t> out)>;

// What we need of one object's ELF image: its program headers and build-id.
struct Headers {
  uint16_t type = 0;
  std::vector<Elf64_Phdr> segments;
  std::string build_id;

  const Elf64_Phdr* find(uint32_t type_) const {
    for (const auto& p : segments)
      if (p.p_type == type_) return &p;
    return nullptr;
  }
  // Page-aligned [lowest, highest) of the PT_LOAD segments, in link-time addresses.
  std::pair<uint64_t, uint64_t> load_extent() const {
    uint64_t lo = UINT64_MAX, hi = 0;
    for (const auto& p : segments) {
      if (p.p_type != PT_LOAD) continue;
      lo = std::min(lo, page_down(p.p_vaddr));
      hi = std::max(hi, page_up(p.p_vaddr + p.p_memsz));
    }
    return lo < hi ? std::pair{lo, hi} : std::pair<uint64_t, uint64_t>{0, 0};
  }
  // p_vaddr of the first PT_LOAD, page aligned: the link-time address of the
  // mapping at file offset 0.
  std::optional<uint64_t> first_load() const {
    for (const auto& p : segments)
      if (p.p_type == PT_LOAD) return page_down(p.p_vaddr);
    return std::nullopt;
  }
};

std::string hex(std::span<const uint8_t> bytes) {
  std::string text;
  for (uint8_t b : bytes) text += fmt::format("{:02x}", b);
  return text;
}

std::string find_build_id(const ReadAt& read, const Elf64_Phdr& note) {
  if (note.p_filesz > (1u << 20)) return {};
  std::vector<uint8_t> bytes(note.p_filesz);
  if (!read(note.p_offset, bytes)) return {};
  const uint64_t align = note.p_align == 8 ? 8 : 4;
  size_t at = 0;
  while (at + 12 <= bytes.size()) {
    uint32_t namesz, descsz, type;
    std::memcpy(&namesz, &bytes[at], 4);
    std::memcpy(&descsz, &bytes[at + 4], 4);
    std::memcpy(&type, &bytes[at + 8], 4);
    size_t name_at = at + 12;
    size_t desc_at = name_at + ((namesz + align - 1) & ~(align - 1));
    size_t next = desc_at + ((descsz + align - 1) & ~(align - 1));
    if (desc_at > bytes.size() || desc_at + descsz > bytes.size() || next < at) return {};
    if (type == NT_GNU_BUILD_ID && namesz == 4 && std::memcmp(&bytes[name_at], "GNU", 4) == 0)
      return hex(std::span(&bytes[desc_at], descsz));
    at = next;
  }
  return {};
}

std::optional<Headers> read_headers(const ReadAt& read) {
  Elf64_Ehdr ehdr;
  if (!read(0, std::span(reinterpret_cast<uint8_t*>(&ehdr), sizeof ehdr))) return std::nullopt;
  if (std::memcmp(ehdr.e_ident, ELFMAG, SELFMAG) != 0 || ehdr.e_ident[EI_CLASS] != ELFCLASS64 ||
      ehdr.e_phentsize != sizeof(Elf64_Phdr) || ehdr.e_phnum == 0 || ehdr.e_phnum > 4096)
    return std::nullopt;
  Headers headers;
  headers.type = ehdr.e_type;
  headers.segments.resize(ehdr.e_phnum);
  std::span raw(reinterpret_cast<uint8_t*>(headers.segments.data()), headers.segments.size() * sizeof(Elf64_Phdr));
  if (!read(ehdr.e_phoff, raw)) return std::nullopt;
  for (const auto& p : headers.segments) {
    if (p.p_type != PT_NOTE) continue;
    headers.build_id = find_build_id(read, p);
    if (!headers.build_id.empty()) break;
  }
  return headers;
}

std::optional<Headers> read_file_headers(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  auto headers = read_headers([fd](uint64_t offset, std::span<uint8_t> out) {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  });
  close(fd);
  return headers;
}

std::string map_files_path(pid_t pid, const Mapping& m) {
  return fmt::format("/proc/{}/map_files/{:x}-{:x}", pid, m.start.value(), m.end.value());
}

// Reads a NUL-terminated string of the target, page by page so that a short
// string at the end of a mapping does not fail.
std::string read_c_string(const Memory& memory, RemoteAddr at, size_t limit = 4096) {
  std::string text;
  std::array<uint8_t, 256> chunk{};
  while (text.size() < limit) {
    size_t want = std::min<uint64_t>(chunk.size(), kPageSize - at.value() % kPageSize);
    size_t got = memory.read_partial(at, std::span(chunk.data(), want));
    if (got == 0) break;
    auto end = std::find(chunk.begin(), chunk.begin() + static_cast<long>(got), 0);
    text.append(chunk.begin(), end);
    if (end != chunk.begin() + static_cast<long>(got)) break;
    at += static_cast<int64_t>(got);
  }
  return text;
}

struct LinkMapEntry {
  RemoteAddr self;
  uint64_t l_addr = 0;
  std::string l_name;
  RemoteAddr l_ld;
};

class Collector {
 public:
  Collector(pid_t pid, const Memory& memory) : pid_(pid), memory_(memory), maps_(read_maps(pid)) {}

  std::vector<LoadedObject> collect() {
    LoadedObject exe = main_executable();
    std::vector<LinkMapEntry> entries = stable_link_map_list(exe);
    if (entries.empty()) {
      add(std::move(exe), exe_has_tls_);
      from_maps();
    } else {
      bool first = true;
      for (const auto& entry : entries) {
        if (first) {
          first = false;
          exe.link_map = entry.self;
          add(std::move(exe), exe_has_tls_);
          continue;
        }
        from_link_map(entry);
      }
    }
    for (size_t i = 0; i < objects_.size(); ++i) objects_[i].load_order = i;
    fill_tls();
    return std::move(objects_);
  }

 private:
  const Mapping* mapping_at(RemoteAddr address) const {
    for (const Mapping& m : maps_)
      if (address >= m.start && address < m.end) return &m;
    return nullptr;
  }

  // Headers of the file behind `m`, read through map_files so that a file
  // replaced on disk since it was loaded is still the one we read.
  std::optional<Headers> headers_of(const Mapping& m, const std::string& fallback_path) {
    if (m.path == "[vdso]") {
      return read_headers([&](uint64_t offset, std::span<uint8_t> out) {
        if (offset + out.size() > static_cast<uint64_t>(m.end - m.start)) return false;
        return memory_.read_partial(m.start + static_cast<int64_t>(offset), out) == out.size();
      });
    }
    std::string special = map_files_path(pid_, m);
    if (access(special.c_str(), F_OK) == 0)
      if (auto h = read_file_headers(special)) return h;
    if (auto h = read_file_headers(m.path)) return h;
    return read_file_headers(fallback_path);
  }

  // Fills the mappings, span and build-id of an object (bias already set)
  // whose file is mapped by `anchor`; returns whether it has a PT_TLS segment.
  bool place(LoadedObject& object, const Mapping& anchor, const Headers& headers) {
    auto [lo, hi] = headers.load_extent();
    RemoteRange extent{object.bias + static_cast<int64_t>(lo), hi - lo};
    for (const Mapping& m : maps_) {
      if (m.path != anchor.path || m.inode != anchor.inode) continue;
      if (!extent.empty() && !m.range().overlaps(extent)) continue;
      if (extent.empty() && &m != &anchor) continue;
      object.mappings.push_back(m);
    }
    // The span covers the whole loaded image, .bss past the file included.
    RemoteAddr start = extent.empty() ? anchor.start : extent.start;
    RemoteAddr end = extent.empty() ? anchor.end : extent.end();
    for (const Mapping& m : object.mappings) {
      start = std::min(start, m.start);
      end = std::max(end, m.end);
    }
    object.span = {start, static_cast<uint64_t>(end - start)};
    object.build_id = headers.build_id;
    return headers.find(PT_TLS) != nullptr;
  }

  void add(LoadedObject object, bool has_tls) {
    objects_.push_back(std::move(object));
    has_tls_.push_back(has_tls);
  }

  LoadedObject main_executable() {
    char buffer[4096];
    std::string exe_link = fmt::format("/proc/{}/exe", pid_);
    ssize_t n = readlink(exe_link.c_str(), buffer, sizeof buffer - 1);
    if (n <= 0) {
      if (!process_alive(pid_)) throw TargetGone(fmt::format("process {} exited", pid_));
      fail("process {}: cannot read {}: {}", pid_, exe_link, errno_text(errno));
    }
    std::string path(buffer, static_cast<size_t>(n));
    const Mapping* first = nullptr;
    for (const Mapping& m : maps_) {
      if (m.path == path && m.offset == 0) {
        first = &m;
        break;
      }
    }
    if (!first) fail("process {}: its executable {} is not in /proc/{}/maps", pid_, path, pid_);
    auto headers = headers_of(*first, path);
    if (!headers) fail("process {}: {}: not a readable 64-bit ELF file", pid_, path);
    LoadedObject exe;
    exe.path = path;
    exe.is_main_executable = true;
    // Non-PIE executables are loaded where they were linked (bias 0), which
    // the same formula yields.
    exe.bias = first->start - static_cast<int64_t>(headers->first_load().value_or(0));
    if (headers->type == ET_EXEC) exe.bias = RemoteAddr(0);
    exe_has_tls_ = place(exe, *first, *headers);
    exe_headers_ = std::move(*headers);
    return exe;
  }

  struct Busy {};  // the dynamic linker is changing the list right now

  // The list as it stands between two dlopen()/dlclose() calls of the target:
  // one read in the middle of a change may follow a link being rewritten or a
  // map being freed, so that is retried.
  std::vector<LinkMapEntry> stable_link_map_list(const LoadedObject& exe) {
    for (int attempt = 0;; ++attempt) {
      try {
        return link_map_list(exe);
      } catch (const TargetGone&) {
        throw;
      } catch (const Busy&) {
        if (attempt == 1000) fail("process {}: its dynamic linker stays busy (dlopen or dlclose); try again", pid_);
      } catch (const Error&) {
        if (attempt >= 5) throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  // The dynamic linker's list, or empty when it cannot be found.
  std::vector<LinkMapEntry> link_map_list(const LoadedObject& exe) {
    std::vector<LinkMapEntry> entries;
    const Elf64_Phdr* dynamic = exe_headers_.find(PT_DYNAMIC);
    if (!dynamic) return entries;
    RemoteAddr at = exe.bias + static_cast<int64_t>(dynamic->p_vaddr);
    uint64_t r_debug = 0;
    std::array<uint8_t, 16 * 64> chunk{};
    for (size_t index = 0; index < kMaxDynamicEntries && r_debug == 0;) {
      size_t got = memory_.read_partial(at, chunk);
      size_t count = got / 16;
      if (count == 0) break;
      bool done = false;
      for (size_t i = 0; i < count; ++i, ++index) {
        int64_t tag;
        uint64_t value;
        std::memcpy(&tag, &chunk[i * 16], 8);
        std::memcpy(&value, &chunk[i * 16 + 8], 8);
        if (tag == DT_NULL) {
          done = true;
          break;
        }
        if (tag == DT_DEBUG) {
          r_debug = value;
          break;
        }
      }
      if (done) break;
      at += static_cast<int64_t>(count * 16);
    }
    if (r_debug == 0) return entries;
    // struct r_debug: int r_version at 0, struct link_map* r_map at 8,
    // r_brk at 16, enum r_state at 24 (RT_CONSISTENT = 0).
    std::array<uint8_t, 32> head{};
    if (memory_.read_partial(RemoteAddr(r_debug), head) != head.size()) return entries;
    int32_t version, state;
    uint64_t node;
    std::memcpy(&version, &head[0], 4);
    std::memcpy(&node, &head[8], 8);
    std::memcpy(&state, &head[24], 4);
    if (version == 0 || node == 0) return entries;  // the dynamic linker has not filled it in yet
    if (state != 0) throw Busy{};
    std::set<uint64_t> seen;
    while (node != 0 && entries.size() < kMaxObjects && seen.insert(node).second) {
      // struct link_map: l_addr 0, l_name 8, l_ld 16, l_next 24, l_prev 32.
      std::array<uint8_t, 32> raw{};
      if (memory_.read_partial(RemoteAddr(node), raw) != raw.size())
        fail("process {}: link_map at {:#x} is unreadable", pid_, node);
      LinkMapEntry entry;
      entry.self = RemoteAddr(node);
      uint64_t name, ld, next;
      std::memcpy(&entry.l_addr, &raw[0], 8);
      std::memcpy(&name, &raw[8], 8);
      std::memcpy(&ld, &raw[16], 8);
      std::memcpy(&next, &raw[24], 8);
      entry.l_ld = RemoteAddr(ld);
      if (name != 0) entry.l_name = read_c_string(memory_, RemoteAddr(name));
      entries.push_back(std::move(entry));
      node = next;
    }
    return entries;
  }

  void from_link_map(const LinkMapEntry& entry) {
    LoadedObject object;
    object.bias = RemoteAddr(entry.l_addr);
    object.link_map = entry.self;
    object.path = entry.l_name;
    const Mapping* anchor = entry.l_ld.is_null() ? nullptr : mapping_at(entry.l_ld);
    if (!anchor || anchor->path.empty()) {
      // Nothing mapped from a file holds its dynamic section: keep what the
      // dynamic linker says, without mappings.
      add(std::move(object), false);
      return;
    }
    object.is_vdso = anchor->path == "[vdso]";
    if (!object.is_vdso || object.path.empty()) object.path = anchor->path;
    auto headers = headers_of(*anchor, entry.l_name);
    if (!headers) {
      object.mappings.push_back(*anchor);
      object.span = anchor->range();
      add(std::move(object), false);
      return;
    }
    bool has_tls = place(object, *anchor, *headers);
    add(std::move(object), has_tls);
  }

  // Without the dynamic linker's list: every ELF file mapped executable, in
  // address order, each starting at its offset-0 mapping.
  void from_maps() {
    const std::string& exe_path = objects_.front().path;
    for (const Mapping& m : maps_) {
      if (m.offset != 0 || m.path == exe_path) continue;
      bool is_vdso = m.path == "[vdso]";
      if (!is_vdso && (m.path.empty() || m.path.front() != '/')) continue;
      bool executable = false;
      for (const Mapping& other : maps_)
        if (other.path == m.path && other.inode == m.inode && other.exec && other.start >= m.start) executable = true;
      if (!executable) continue;
      auto headers = headers_of(m, m.path);
      if (!headers || !headers->first_load()) continue;
      LoadedObject object;
      object.path = m.path;
      object.is_vdso = is_vdso;
      object.bias = m.start - static_cast<int64_t>(*headers->first_load());
      if (headers->type == ET_EXEC) object.bias = RemoteAddr(0);
      bool has_tls = place(object, m, *headers);
      add(std::move(object), has_tls);
    }
  }

  // glibc's l_tls_modid / l_tls_offset of every object with a PT_TLS segment.
  void fill_tls() {
    bool any = false;
    for (size_t i = 0; i < objects_.size(); ++i) any |= has_tls_[i] && !objects_[i].link_map.is_null();
    if (!any) return;
    const LoadedObject* libc = nullptr;
    for (const auto& object : objects_) {
      std::string_view name = object.path;
      name = name.substr(name.rfind('/') + 1);
      if (name.starts_with("libc.so")) libc = &object;
    }
    if (!libc) return;  // not glibc: no descriptors to go by
    std::optional<elf::ElfFile> file;
    try {
      file.emplace(elf::ElfFile::open(openable_path(pid_, *libc)));
    } catch (const Error&) {
      return;
    }
    auto descriptor = [&](std::string_view symbol) -> std::optional<uint32_t> {
      for (const auto& s : file->dynamic_symbols()) {
        if (s.name != symbol || !s.defined() || s.size < 12) continue;
        auto bytes = file->bytes_at_vaddr(s.value, 12);
        if (bytes.size() != 12) return std::nullopt;
        uint32_t field[3];
        std::memcpy(field, bytes.data(), 12);
        // {size in bits, element count, offset in struct link_map}: we read a
        // size_t (64 bits), not an array.
        if (field[0] != 64 || field[1] > 1) return std::nullopt;
        return field[2];
      }
      return std::nullopt;
    };
    auto modid_at = descriptor("_thread_db_link_map_l_tls_modid");
    auto offset_at = descriptor("_thread_db_link_map_l_tls_offset");
    if (!modid_at) return;
    for (size_t i = 0; i < objects_.size(); ++i) {
      LoadedObject& object = objects_[i];
      if (!has_tls_[i] || object.link_map.is_null()) continue;
      object.tls_modid = memory_.read_u64(object.link_map + *modid_at);
      if (!offset_at) continue;
      uint64_t offset = memory_.read_u64(object.link_map + *offset_at);
      // glibc: 0 is NO_TLS_OFFSET (not placed in static TLS yet) and -1 is
      // FORCED_DYNAMIC_TLS_OFFSET (never will be): only dynamic access works.
      if (offset != 0 && offset != UINT64_MAX) object.tls_offset = static_cast<int64_t>(offset);
    }
  }

  pid_t pid_;
  const Memory& memory_;
  std::vector<Mapping> maps_;
  Headers exe_headers_;
  bool exe_has_tls_ = false;
  std::vector<LoadedObject> objects_;
  std::vector<bool> has_tls_;  // parallel to objects_
};

}  // namespace

std::vector<LoadedObject> loaded_objects(pid_t pid, const Memory& memory) {
  return Collector(pid, memory).collect();
}

std::string openable_path(pid_t pid, const LoadedObject& object) {
  if (!object.mappings.empty()) {
    std::string special = map_files_path(pid, object.mappings.front());
    if (access(special.c_str(), F_OK) == 0) return special;
  }
  return object.path;
}

}  // namespace suture::process
