// Unwinding the threads of a held process.
//
// The problem. Before code changes we must know, for every thread, every function
// it is inside: not only the one it executes (pc) but every caller it will return
// into. Targets are built with -O2 and usually without frame pointers, so the only
// reliable map from a frame to its caller is the DWARF call-frame information
// (.eh_frame) that every x86-64 object carries for exceptions. And the walk
// happens while the whole process is held: whatever it costs is the pause the
// target's users see, multiplied by up to hundreds of threads.
//
// The approach. libunwind interprets the CFI; we give it an address space whose
// accessors are ours:
//  - memory comes from /proc/PID/mem through a cache of 4 KiB pages. One pread
//    brings in a page of stack or of .eh_frame_hdr, where libunwind would ask
//    word by word (the stock _UPT_access_mem makes one PTRACE_PEEKDATA system
//    call per 8 bytes, a hundred or more per frame). While the process is held
//    nothing changes under the cache, so it is shared by all threads of one hold
//    and dropped by invalidate() when the target has run;
//  - registers come from one PTRACE_GETREGS per thread (or from the caller, who
//    usually has them already) instead of one PTRACE_PEEKUSER per register;
//  - unwind tables are found by reading each object's ELF program headers and
//    its .eh_frame_hdr search table out of the target's memory, once per object
//    per hold, and searched with libunwind's own dwarf_search_unwind_table;
//  - the address space uses UNW_CACHE_GLOBAL and lives as long as the Unwinder,
//    so the frame rules parsed for one thread's pc serve every other thread
//    parked at the same pc (the usual case: pools of identical workers).
//
// Rejected alternatives.
//  - Delegating find_proc_info to _UPT_find_proc_info. It cannot be combined with
//    our accessors: it reads the tables through the address space's access_mem
//    but hands it its own UPT context as the argument, not ours. It also keeps one
//    object's ELF image per context: every time consecutive frames cross from the
//    executable into libc it rereads /proc/PID/maps and mmaps the other file.
//  - A pure _UPT address space per thread (_UPT_create + _UPT_accessors): correct
//    but slow for the reasons above; the unit test measures it for comparison.
//  - Following frame pointers: wrong for code built without them (most of it).
//  - Scanning raw stack words for return addresses (what some patchers do): any
//    stale word that looks like a code address becomes a false conflict.
//
// get_proc_name is still delegated to libunwind-ptrace (it reads the object's
// file and needs no accessor). Dynamically registered unwind info
// (_U_dyn_register) is not supported: nothing we target uses it.
#include "consistency/unwind.h"

#include <elf.h>
#include <fcntl.h>
#include <libunwind-ptrace.h>
#include <libunwind.h>
#include <sys/ptrace.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>

#include <fmt/format.h>

#include "common/error.h"
#include "common/page.h"
#include "consistency/eh-frame-index.h"

// libunwind exports its eh_frame_hdr search but no header declares it.
extern "C" int UNW_OBJ(dwarf_search_unwind_table)(unw_addr_space_t as, unw_word_t ip, unw_dyn_info_t* di,
                                                  unw_proc_info_t* pi, int need_unwind_info, void* arg);

namespace suture::consistency {
namespace {


// Tables made for code without an object (Impl::made_table) are read by
// libunwind at addresses from here: above user space, so no read of the
// target's memory can ask for one.
constexpr uint64_t kMadeTables = 0xfff0'0000'0000'0000ull;

// One mapping of /proc/PID/maps.
struct Mapping {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t offset = 0;
  bool executable = false;
  bool writable = false;
  std::string identity;  // "dev inode path": equal for all mappings of one object
};

std::optional<std::string> read_text_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

std::vector<Mapping> parse_maps(std::string_view text) {
  std::vector<Mapping> maps;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);

    // start-end perms offset dev inode [path]
    unsigned long long start = 0, end = 0, offset = 0, inode = 0;
    char perms[8] = {};
    char dev[32] = {};
    int path_at = 0;
    std::string owned(line);
    if (std::sscanf(owned.c_str(), "%llx-%llx %7s %llx %31s %llu %n", &start, &end, perms, &offset, dev, &inode,
                    &path_at) < 6)
      continue;
    Mapping m;
    m.start = start;
    m.end = end;
    m.offset = offset;
    m.executable = perms[2] == 'x';
    m.writable = perms[1] == 'w';
    std::string_view path = path_at > 0 ? std::string_view(owned).substr(static_cast<size_t>(path_at)) : "";
    if (path.empty()) continue;  // anonymous: no object, no unwind table
    m.identity = fmt::format("{} {} {}", dev, inode, path);
    maps.push_back(std::move(m));
  }
  return maps;
}

}  // namespace

struct Unwinder::Impl {
  struct Page {
    bool readable = false;
    std::array<uint8_t, kPageSize> bytes;
  };

  // The .eh_frame_hdr search table of one loaded object (or the knowledge that
  // it has none: has_table false), covering [start, end).
  struct ObjectTable {
    uint64_t start = 0;
    uint64_t end = 0;
    bool has_table = false;
    uint64_t hdr = 0;         // address of .eh_frame_hdr (its "datarel" base)
    uint64_t table = 0;       // address of the sorted (initial pc, fde) pairs
    uint64_t fde_count = 0;
    uint64_t gp = 0;          // DT_PLTGOT; unused on x86-64 but filled in like libunwind
  };

  pid_t pid;
  std::vector<CodeUnwindTables> code_tables;
  int mem_fd = -1;
  unw_addr_space_t as = nullptr;
  void* upt = nullptr;  // libunwind-ptrace context, only for get_proc_name

  // Caches valid for one hold (see invalidate()).
  std::unordered_map<uint64_t, std::unique_ptr<Page>> pages;
  uint64_t last_page_address = ~0ull;
  const Page* last_page = nullptr;
  std::vector<ObjectTable> tables;
  std::optional<std::vector<Mapping>> maps;
  // Search tables made here for code_tables, read by libunwind through
  // access_mem at addresses no process can map (see made_table()).
  std::map<uint64_t, std::vector<uint8_t>> made;
  uint64_t next_made = kMadeTables;

  // The thread being unwound.
  user_regs_struct regs{};

  // snapshot_stack(): pages not in the copy may be read only where nothing can
  // have changed since (file-backed, not writable: code, unwind tables).
  bool frozen = false;
  bool missed = false;

  Impl(pid_t target, std::vector<CodeUnwindTables> code) : pid(target), code_tables(std::move(code)) {}

  const std::vector<Mapping>& mappings() {
    // The process is held (or, between holds, loads nothing meanwhile): its
    // mappings cannot change before invalidate().
    if (!maps) {
      auto text = read_text_file(fmt::format("/proc/{}/maps", pid));
      maps = text ? parse_maps(*text) : std::vector<Mapping>();
    }
    return *maps;
  }

  bool immutable(uint64_t address) {
    for (const Mapping& m : mappings())
      if (address >= m.start && address < m.end) return !m.writable;
    return false;  // anonymous (stacks, heap) or unmapped
  }

  const Page* page_at(uint64_t page_address) {
    if (page_address == last_page_address) return last_page;
    if (frozen && !pages.contains(page_address) && !immutable(page_address)) {
      static const Page kOutsideTheCopy{};
      missed = true;
      return &kOutsideTheCopy;
    }
    auto& slot = pages[page_address];
    if (!slot) {
      slot = std::make_unique<Page>();
      ssize_t n;
      do {
        n = ::pread(mem_fd, slot->bytes.data(), kPageSize, static_cast<off_t>(page_address));
      } while (n < 0 && errno == EINTR);
      slot->readable = n == static_cast<ssize_t>(kPageSize);
    }
    last_page_address = page_address;
    last_page = slot.get();
    return last_page;
  }

  bool read(uint64_t address, void* out, size_t size) {
    if (address >= kMadeTables) return read_made(address, out, size);
    auto* to = static_cast<uint8_t*>(out);
    while (size > 0) {
      uint64_t page_address = page_down(address);
      const Page* page = page_at(page_address);
      if (!page->readable) return false;
      size_t in_page = static_cast<size_t>(address - page_address);
      size_t chunk = std::min<size_t>(size, kPageSize - in_page);
      std::memcpy(to, page->bytes.data() + in_page, chunk);
      to += chunk;
      address += chunk;
      size -= chunk;
    }
    return true;
  }

  template <typename T>
  bool read_value(uint64_t address, T& value) {
    return read(address, &value, sizeof value);
  }

  bool read_made(uint64_t address, void* out, size_t size) {
    auto it = made.upper_bound(address);
    if (it == made.begin()) return false;
    --it;
    uint64_t offset = address - it->first;
    if (offset > it->second.size() || size > it->second.size() - offset) return false;
    std::memcpy(out, it->second.data() + offset, size);
    return true;
  }

  void forget() {
    pages.clear();
    last_page_address = ~0ull;
    last_page = nullptr;
    tables.clear();
    maps.reset();
    made.clear();
    next_made = kMadeTables;
  }

  // Reads one pointer of .eh_frame_hdr encoded as `encoding` at *address, which
  // it advances (eh-frame-index.h: the fixed-size forms linkers emit there).
  bool read_encoded(uint64_t& address, uint8_t encoding, uint64_t hdr, uint64_t& value) {
    std::array<uint8_t, 8> bytes{};
    size_t size = eh_pointer_size(encoding), at = 0;
    if (size == 0 || !read(address, bytes.data(), size)) return false;
    auto decoded = decode_eh_pointer(std::span<const uint8_t>(bytes.data(), size), at, address, encoding, hdr);
    if (!decoded) return false;
    address += size;
    value = *decoded;
    return true;
  }

  // Builds the table entry for the object mapped by `hit`, reading its ELF
  // header and program headers from the target's memory (this also covers the
  // vDSO, which has no file).
  ObjectTable describe_object(const Mapping& hit) {
    ObjectTable object;
    object.start = hit.start;
    object.end = hit.end;

    const Mapping* first = nullptr;
    for (const Mapping& m : *maps)
      if (m.identity == hit.identity && m.offset == 0) {
        first = &m;
        break;
      }
    if (!first) return object;

    Elf64_Ehdr ehdr;
    if (!read_value(first->start, ehdr) || std::memcmp(ehdr.e_ident, ELFMAG, SELFMAG) != 0 ||
        ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_phentsize != sizeof(Elf64_Phdr) || ehdr.e_phnum > 256)
      return object;
    std::vector<Elf64_Phdr> phdrs(ehdr.e_phnum);
    if (!read(first->start + ehdr.e_phoff, phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr))) return object;

    // The mapping at file offset 0 is the PT_LOAD that starts at offset 0.
    const Elf64_Phdr* eh_frame_hdr = nullptr;
    const Elf64_Phdr* dynamic = nullptr;
    std::optional<uint64_t> bias;
    uint64_t low = ~0ull, high = 0;
    for (const Elf64_Phdr& p : phdrs) {
      if (p.p_type == PT_LOAD) {
        if (!bias && page_down(p.p_offset) == 0) bias = first->start - page_down(p.p_vaddr);
        low = std::min(low, p.p_vaddr);
        high = std::max(high, p.p_vaddr + p.p_memsz);
      } else if (p.p_type == PT_GNU_EH_FRAME) {
        eh_frame_hdr = &p;
      } else if (p.p_type == PT_DYNAMIC) {
        dynamic = &p;
      }
    }
    if (!bias || low >= high) return object;
    // Widen to the whole object, so one lookup serves all its mappings.
    if (*bias + low <= hit.start && hit.end <= *bias + high) {
      object.start = *bias + low;
      object.end = *bias + high;
    }
    if (!eh_frame_hdr) return object;

    if (dynamic) {
      for (uint64_t at = *bias + dynamic->p_vaddr, end = at + dynamic->p_memsz; at + sizeof(Elf64_Dyn) <= end;
           at += sizeof(Elf64_Dyn)) {
        Elf64_Dyn dyn;
        if (!read_value(at, dyn) || dyn.d_tag == DT_NULL) break;
        if (dyn.d_tag == DT_PLTGOT) object.gp = dyn.d_un.d_ptr;
      }
    }

    // .eh_frame_hdr: version, eh_frame_ptr encoding, fde_count encoding, table
    // encoding, then eh_frame_ptr, fde_count and the table itself.
    uint64_t hdr = *bias + eh_frame_hdr->p_vaddr;
    uint8_t head[4];
    if (!read(hdr, head, sizeof head) || head[0] != 1) return object;
    uint64_t at = hdr + 4;
    uint64_t eh_frame = 0, fde_count = 0;
    if (head[1] == DW_EH_PE_omit || head[2] == DW_EH_PE_omit) return object;
    if (!read_encoded(at, head[1], hdr, eh_frame) || !read_encoded(at, head[2], hdr, fde_count)) return object;
    // libunwind's binary search understands only this table encoding, which is
    // what every linker writes; anything else is left without a table.
    if (head[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4)) return object;
    object.has_table = true;
    object.hdr = hdr;
    object.table = at;
    object.fde_count = fde_count;
    return object;
  }

  // The table of code that no object describes: the FDEs of its .eh_frame
  // lists, indexed (eh-frame-index.h) into the sorted pairs of an
  // .eh_frame_hdr, relative to the first list, kept here and handed to
  // libunwind at an address above any process's (kMadeTables). An FDE too far
  // from that base for the pairs' 32 bits is left out (never seen: a patch's
  // parts are one mapping).
  ObjectTable made_table(const CodeUnwindTables& code) {
    ObjectTable object;
    object.start = code.code.start.value();
    object.end = code.code.end().value();
    if (code.eh_frames.empty()) return object;
    const uint64_t base = code.eh_frames.front().value();
    std::vector<std::pair<int32_t, int32_t>> pairs;
    auto reader = [this](uint64_t address, void* out, size_t size) { return read(address, out, size); };
    for (RemoteAddr list : code.eh_frames) {
      std::vector<FdeEntry> entries;
      try {
        entries = index_eh_frame(reader, list.value());
      } catch (const Error&) {
        continue;  // unreadable: this list's frames stay unknown, as before there were any
      }
      for (const FdeEntry& e : entries) {
        auto pc = static_cast<int64_t>(e.pc_begin - base), fde = static_cast<int64_t>(e.fde - base);
        if (pc != static_cast<int32_t>(pc) || fde != static_cast<int32_t>(fde)) continue;
        pairs.emplace_back(static_cast<int32_t>(pc), static_cast<int32_t>(fde));
      }
    }
    if (pairs.empty()) return object;
    std::sort(pairs.begin(), pairs.end());
    std::vector<uint8_t> bytes(pairs.size() * 8);
    for (size_t i = 0; i < pairs.size(); ++i) {
      std::memcpy(bytes.data() + 8 * i, &pairs[i].first, 4);
      std::memcpy(bytes.data() + 8 * i + 4, &pairs[i].second, 4);
    }
    object.has_table = true;
    object.hdr = base;
    object.table = next_made;
    object.fde_count = pairs.size();
    next_made += page_down(bytes.size() + kPageSize);
    made.emplace(object.table, std::move(bytes));
    return object;
  }

  const ObjectTable* table_for(uint64_t ip) {
    for (const ObjectTable& t : tables)
      if (ip >= t.start && ip < t.end) return t.has_table ? &t : nullptr;
    for (const CodeUnwindTables& code : code_tables)
      if (code.code.contains(RemoteAddr(ip))) {
        tables.push_back(made_table(code));
        return tables.back().has_table ? &tables.back() : nullptr;
      }
    for (const Mapping& m : mappings())
      if (ip >= m.start && ip < m.end) {
        if (!m.executable) return nullptr;
        tables.push_back(describe_object(m));
        return tables.back().has_table ? &tables.back() : nullptr;
      }
    return nullptr;
  }

  // --- libunwind accessors; arg is the Impl. They must not throw. ---

  static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t* pi, int need_unwind_info,
                            void* arg) noexcept {
    auto* self = static_cast<Impl*>(arg);
    const ObjectTable* t = nullptr;
    try {
      t = self->table_for(ip);
    } catch (...) {
      return -UNW_ENOMEM;
    }
    if (!t) return -UNW_ENOINFO;
    unw_dyn_info_t di;
    std::memset(&di, 0, sizeof di);
    di.start_ip = t->start;
    di.end_ip = t->end;
    di.gp = t->gp;
    di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    di.u.rti.name_ptr = 0;
    di.u.rti.segbase = t->hdr;
    di.u.rti.table_data = t->table;
    di.u.rti.table_len = t->fde_count * 8 / sizeof(unw_word_t);  // pairs of int32
    return UNW_OBJ(dwarf_search_unwind_table)(as, ip, &di, pi, need_unwind_info, arg);
  }

  // What find_proc_info hands out comes from libunwind's own pools and is given
  // back by libunwind itself; _UPT_put_unwind_info would free() it.
  static void put_unwind_info(unw_addr_space_t, unw_proc_info_t*, void*) noexcept {}

  static int get_dyn_info_list_addr(unw_addr_space_t, unw_word_t*, void*) noexcept { return -UNW_ENOINFO; }

  static int access_mem(unw_addr_space_t, unw_word_t address, unw_word_t* value, int write, void* arg) noexcept {
    if (write) return -UNW_EINVAL;  // we only look
    auto* self = static_cast<Impl*>(arg);
    try {
      return self->read_value(address, *value) ? 0 : -UNW_EINVAL;
    } catch (...) {
      return -UNW_ENOMEM;
    }
  }

  static int access_reg(unw_addr_space_t, unw_regnum_t reg, unw_word_t* value, int write, void* arg) noexcept {
    if (write) return -UNW_EREADONLYREG;
    const user_regs_struct& r = static_cast<Impl*>(arg)->regs;
    switch (reg) {
      case UNW_X86_64_RAX: *value = r.rax; return 0;
      case UNW_X86_64_RDX: *value = r.rdx; return 0;
      case UNW_X86_64_RCX: *value = r.rcx; return 0;
      case UNW_X86_64_RBX: *value = r.rbx; return 0;
      case UNW_X86_64_RSI: *value = r.rsi; return 0;
      case UNW_X86_64_RDI: *value = r.rdi; return 0;
      case UNW_X86_64_RBP: *value = r.rbp; return 0;
      case UNW_X86_64_RSP: *value = r.rsp; return 0;
      case UNW_X86_64_R8: *value = r.r8; return 0;
      case UNW_X86_64_R9: *value = r.r9; return 0;
      case UNW_X86_64_R10: *value = r.r10; return 0;
      case UNW_X86_64_R11: *value = r.r11; return 0;
      case UNW_X86_64_R12: *value = r.r12; return 0;
      case UNW_X86_64_R13: *value = r.r13; return 0;
      case UNW_X86_64_R14: *value = r.r14; return 0;
      case UNW_X86_64_R15: *value = r.r15; return 0;
      case UNW_X86_64_RIP: *value = r.rip; return 0;
      default: return -UNW_EBADREG;
    }
  }

  // CFI on x86-64 never needs floating-point registers to find a caller.
  static int access_fpreg(unw_addr_space_t, unw_regnum_t, unw_fpreg_t*, int, void*) noexcept {
    return -UNW_EBADREG;
  }

  // Resuming a remote cursor would move the target's thread: never.
  static int resume(unw_addr_space_t, unw_cursor_t*, void*) noexcept { return -UNW_EINVAL; }

  static int get_proc_name(unw_addr_space_t as, unw_word_t ip, char* buffer, size_t size, unw_word_t* offset,
                           void* arg) noexcept {
    auto* self = static_cast<Impl*>(arg);
    if (!self->upt) return -UNW_ENOINFO;
    return _UPT_get_proc_name(as, ip, buffer, size, offset, self->upt);
  }

  static unw_accessors_t accessors() {
    unw_accessors_t a;
    std::memset(&a, 0, sizeof a);
    a.find_proc_info = find_proc_info;
    a.put_unwind_info = put_unwind_info;
    a.get_dyn_info_list_addr = get_dyn_info_list_addr;
    a.access_mem = access_mem;
    a.access_reg = access_reg;
    a.access_fpreg = access_fpreg;
    a.resume = resume;
    a.get_proc_name = get_proc_name;
    return a;
  }
};

Unwinder::Unwinder(pid_t pid, std::vector<CodeUnwindTables> code_tables)
    : impl_(std::make_unique<Impl>(pid, std::move(code_tables))) {
  std::string path = fmt::format("/proc/{}/mem", pid);
  impl_->mem_fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (impl_->mem_fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) throw TargetGone(fmt::format("process {} does not exist", pid));
    fail("process {}: cannot open {}: {}", pid, path, errno_text(err));
  }
  unw_accessors_t accessors = Impl::accessors();
  impl_->as = unw_create_addr_space(&accessors, 0);
  if (!impl_->as) {
    ::close(impl_->mem_fd);
    fail("process {}: libunwind could not create an address space", pid);
  }
  unw_set_caching_policy(impl_->as, UNW_CACHE_GLOBAL);
  // Room for the frame rules of many distinct pcs (the default keeps 128).
  unw_set_cache_size(impl_->as, 4096, 0);
  impl_->upt = _UPT_create(pid);
}

Unwinder::~Unwinder() {
  if (impl_->upt) _UPT_destroy(impl_->upt);
  unw_destroy_addr_space(impl_->as);
  ::close(impl_->mem_fd);
}

Backtrace Unwinder::unwind(pid_t tid, size_t max_frames) {
  user_regs_struct regs{};
  if (::ptrace(PTRACE_GETREGS, tid, nullptr, &regs) != 0) {
    Backtrace trace;
    trace.tid = tid;
    trace.complete = false;
    trace.problem = fmt::format("cannot read the registers of thread {}: {} (is it held?)", tid, errno_text(errno));
    return trace;
  }
  return unwind(tid, regs, max_frames);
}

Backtrace Unwinder::unwind(pid_t tid, const user_regs_struct& registers, size_t max_frames) {
  Backtrace trace;
  trace.tid = tid;
  auto stop = [&](std::string problem) {
    trace.complete = false;
    trace.problem = std::move(problem);
    return trace;
  };
  if (registers.rip == 0) return stop("the thread's pc is 0");
  if (max_frames == 0) return stop("asked for no frames");

  impl_->regs = registers;
  unw_cursor_t cursor;
  int rc = unw_init_remote(&cursor, impl_->as, impl_.get());
  if (rc < 0) {
    trace.pcs.push_back(RemoteAddr(registers.rip));
    return stop(fmt::format("cannot start unwinding: {}", unw_strerror(rc)));
  }

  unw_word_t last_ip = 0, last_sp = 0;
  for (;;) {
    unw_word_t ip = 0, sp = 0;
    if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0 || unw_get_reg(&cursor, UNW_REG_SP, &sp) < 0)
      return stop(fmt::format("cannot read the registers of frame #{}", trace.pcs.size()));
    if (ip == 0) break;  // some stacks end with a zero return address
    if (!trace.pcs.empty() && ip == last_ip && sp == last_sp)
      return stop(fmt::format("unwinding made no progress at frame #{} ({:#x})", trace.pcs.size() - 1, ip));
    if (trace.pcs.size() == max_frames)
      return stop(fmt::format("stopped after {} frames; the stack is deeper", max_frames));
    trace.pcs.push_back(RemoteAddr(ip));
    last_ip = ip;
    last_sp = sp;

    rc = unw_step(&cursor);
    if (rc == 0) break;  // the outermost frame (CFI marks the return address undefined)
    if (rc < 0)
      return stop(fmt::format("cannot unwind past frame #{} ({:#x}): {}", trace.pcs.size() - 1, ip,
                              unw_strerror(rc)));
  }
  return trace;
}

void Unwinder::forget_memory() {
  impl_->pages.clear();
  impl_->last_page_address = ~0ull;
  impl_->last_page = nullptr;
}

void Unwinder::snapshot_stack(RemoteAddr sp, size_t bytes) {
  uint64_t from = page_down(sp.value());
  uint64_t to = page_up(sp.value() + bytes);
  StackCopy copy{RemoteAddr(from), std::vector<uint8_t>(to - from)};
  ssize_t n;
  do {
    n = ::pread(impl_->mem_fd, copy.bytes.data(), copy.bytes.size(), static_cast<off_t>(from));
  } while (n < 0 && errno == EINTR);
  // /proc/PID/mem stops at the end of the stack's mapping: what is beyond
  // was never part of the stack.
  copy.bytes.resize(n > 0 ? static_cast<size_t>(n) : 0);
  snapshot_stack(copy);
}

void Unwinder::snapshot_stack(const StackCopy& copy) {
  forget_memory();
  uint64_t from = copy.from.value();
  if (from % kPageSize != 0) fail("internal: a stack copy must start at a page boundary");
  for (uint64_t at = 0; at + kPageSize <= copy.bytes.size(); at += kPageSize) {
    auto page = std::make_unique<Impl::Page>();
    page->readable = true;
    std::memcpy(page->bytes.data(), copy.bytes.data() + at, kPageSize);
    impl_->pages[from + at] = std::move(page);
  }
  impl_->frozen = true;
  impl_->missed = false;
}

bool Unwinder::thaw() {
  bool missed = impl_->missed;
  impl_->frozen = false;
  impl_->missed = false;
  forget_memory();
  return !missed;
}

void Unwinder::invalidate() {
  impl_->forget();
  unw_flush_cache(impl_->as, 0, 0);
}

}  // namespace suture::consistency
