// /proc/PID/maps, and choosing where new code may live.
//
// Patch code must sit within a rel32 of the code it is redirected from and of
// everything it calls, in both directions, so find_free_near() looks for a gap
// whose every byte is within `reach` of every byte of `near`. Among the gaps
// that qualify it takes the closest one: the nearer the block, the more room is
// left for later patches and the less likely a far call needs a thunk.
//
// Gaps we never offer: below vm.mmap_min_addr (mmap would fail), at or above the
// top of the user address space, and the stretch right below the main [stack]
// mapping, which grows down into it on demand (a block there would turn deep
// recursion into a SIGSEGV long before the stack rlimit). The stack keeps room
// for the default 8 MiB rlimit plus the kernel's 1 MiB guard gap.
#include "process/maps.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <string_view>

#include "common/error.h"
#include "common/page.h"
#include "process/proc-files.h"

namespace suture::process {
namespace {

constexpr uint64_t kUserTop = 0x7ffffffff000ULL;
constexpr uint64_t kStackGuardGap = 1ULL << 20;  // the kernel's stack_guard_gap
constexpr uint64_t kStackReserve = 8ULL << 20;   // the usual RLIMIT_STACK

bool parse_hex(std::string_view text, uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, 16);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_dec(std::string_view text, uint64_t& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, 10);
  return ec == std::errc() && end == text.data() + text.size();
}

// Splits off the next field separated by spaces; `rest` keeps what follows.
std::string_view next_field(std::string_view& rest) {
  size_t begin = rest.find_first_not_of(' ');
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  size_t end = rest.find(' ');
  std::string_view field = rest.substr(0, end);
  rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  return field;
}

// One line: "start-end perms offset dev inode   path". The path is the rest of
// the line, spaces included.
bool parse_line(std::string_view line, Mapping& m) {
  std::string_view rest = line;
  std::string_view range = next_field(rest);
  std::string_view perms = next_field(rest);
  std::string_view offset = next_field(rest);
  std::string_view device = next_field(rest);
  std::string_view inode = next_field(rest);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos || perms.size() < 4 || device.empty()) return false;
  uint64_t start = 0, end = 0;
  if (!parse_hex(range.substr(0, dash), start) || !parse_hex(range.substr(dash + 1), end)) return false;
  if (!parse_hex(offset, m.offset) || !parse_dec(inode, m.inode)) return false;
  m.start = RemoteAddr(start);
  m.end = RemoteAddr(end);
  m.read = perms[0] == 'r';
  m.write = perms[1] == 'w';
  m.exec = perms[2] == 'x';
  m.shared = perms[3] == 's';
  size_t path_begin = rest.find_first_not_of(' ');
  m.path = path_begin == std::string_view::npos ? std::string() : std::string(rest.substr(path_begin));
  return true;
}

uint64_t mmap_min_addr() {
  std::ifstream in("/proc/sys/vm/mmap_min_addr");
  uint64_t value = 0;
  if (!(in >> value)) value = 65536;  // the usual default when we cannot tell
  return std::max<uint64_t>(value, kPageSize);
}

}  // namespace

std::vector<Mapping> read_maps(pid_t pid) {
  std::string file = fmt::format("/proc/{}/maps", pid);
  FILE* in = std::fopen(file.c_str(), "re");
  if (!in) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) throw TargetGone(fmt::format("process {} does not exist", pid));
    fail("{}: {}", file, errno_text(err));
  }
  std::vector<Mapping> maps;
  char* line = nullptr;
  size_t capacity = 0;
  ssize_t length;
  errno = 0;
  while ((length = getline(&line, &capacity, in)) > 0) {
    std::string_view text(line, static_cast<size_t>(length));
    if (text.back() == '\n') text.remove_suffix(1);
    Mapping m;
    if (!parse_line(text, m)) {
      std::free(line);
      std::fclose(in);
      fail("{}: cannot parse line '{}'", file, text);
    }
    maps.push_back(std::move(m));
  }
  int err = errno;
  std::free(line);
  std::fclose(in);
  // A process that died (or is dying) shows an empty file, or ESRCH; one that
  // runs in user space always has at least its stack.
  if (err == ESRCH || maps.empty()) throw TargetGone(fmt::format("process {} exited", pid));
  if (err != 0) fail("{}: {}", file, errno_text(err));
  return maps;
}

std::optional<RemoteAddr> find_free_near(const std::vector<Mapping>& maps, RemoteRange near, uint64_t size,
                                         uint64_t reach) {
  if (size == 0) return std::nullopt;
  size = page_up(size);
  const uint64_t near_lo = near.start.value();
  const uint64_t near_hi = near.end().value();
  if (near_hi - near_lo > reach) return std::nullopt;

  // Every byte of the block must be within reach of every byte of `near`:
  // block_end - near_lo <= reach and near_hi - block_start <= reach.
  const uint64_t lowest = std::max(mmap_min_addr(), near_hi > reach ? near_hi - reach : 0);
  const uint64_t highest = std::min(kUserTop, near_lo + reach);  // exclusive end of the block

  std::vector<std::pair<uint64_t, uint64_t>> used;  // [start, end), sorted like the maps file
  for (const Mapping& m : maps) {
    uint64_t start = m.start.value();
    if (m.path == "[stack]") {
      uint64_t end = m.end.value();
      uint64_t keep_out = std::min(start > kStackGuardGap ? start - kStackGuardGap : 0,
                                   end > kStackReserve + kStackGuardGap ? end - kStackReserve - kStackGuardGap : 0);
      start = keep_out;
    }
    used.emplace_back(start, m.end.value());
  }
  std::sort(used.begin(), used.end());

  std::optional<RemoteAddr> best;
  uint64_t best_distance = UINT64_MAX;
  uint64_t cursor = 0;  // the end of everything seen so far
  auto consider_gap = [&](uint64_t gap_lo, uint64_t gap_hi) {
    gap_lo = std::max(gap_lo, lowest);
    gap_hi = std::min(gap_hi, highest);
    gap_lo = page_up(gap_lo);
    gap_hi = page_down(gap_hi);
    if (gap_hi <= gap_lo || gap_hi - gap_lo < size) return;
    // The placement closest to `near` within this gap.
    uint64_t start;
    if (gap_hi <= near_lo) start = gap_hi - size;
    else if (gap_lo >= near_hi) start = gap_lo;
    else start = std::clamp(near_hi, gap_lo, gap_hi - size);  // `near` is not mapped; stay after it
    // The farthest pair of bytes, one in the block and one in `near`.
    uint64_t distance = std::max(start + size > near_lo ? start + size - near_lo : 0,
                                 near_hi > start ? near_hi - start : 0);
    if (distance > reach) return;
    if (distance < best_distance) {
      best_distance = distance;
      best = RemoteAddr(start);
    }
  };
  for (const auto& [start, end] : used) {
    if (start > cursor) consider_gap(cursor, start);
    cursor = std::max(cursor, end);
  }
  consider_gap(cursor, kUserTop);
  return best;
}

}  // namespace suture::process
