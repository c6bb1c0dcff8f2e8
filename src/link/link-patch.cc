// Linking a patch object into the target, in a local copy that knows its final
// addresses.
//
// The problem: a patch is a relocatable object compiled with whatever model the
// author chose (-fPIC, -fPIE, non-PIC, small or large), and it must run at an
// address the engine picked, calling into objects that may lie anywhere in the
// 47-bit address space. There is no dynamic linker to help: the bytes we write
// are final.
//
// The approach, in phases (what is true after each):
//   1. lay out   every loaded section has a part (text, rodata, data) and an
//                offset in it; the order and offsets depend on the object only,
//                so measure() and link_patch() agree on them;
//   2. copy      the local copies hold the sections' bytes;
//   3. resolve   (lazily, per referenced symbol) every symbol has its final S:
//                the patch's own definitions first, then an explicit binding,
//                then the target's scope (TargetSymbols);
//   4. relocate  each relocation is applied; a GOT-type one first gets its slot
//                in the table after rodata, a call that cannot reach its target
//                first gets a stub after text. Both are deduplicated, and their
//                contents are final when allocated (nothing is bound lazily).
// measure() bounds phase 4's additions by counting the relocations that might
// need them, so the engine can reserve the space before the link.
//
// Rejected alternatives: one RWX region (simpler, but we never map W+X);
// relaxing GOTPCRELX loads into lea (saves a load, but the slot must exist for
// the non-relaxable forms anyway and correctness first); always calling through
// stubs (costs an indirect jump on calls that are near, the common case once the
// region sits next to the patched object).
//
// Unwind information is linked like everything else: .eh_frame goes to rodata,
// all such sections back to back (a padding word between them would read as the
// terminator) and ended by a zero length word, as a linker ends the section
// (crtend's terminator); its PC32 relocations reach the code, the LSDAs in
// .gcc_except_table* (ordinary rodata) and the DW.ref.* personality pointers
// (read-only once linked). A zeroed block in data is left for the unwinder's
// bookkeeping; the engine registers the tables (engine/unwind-registration.h).
// Rejected: building an .eh_frame_hdr search table (libgcc's registry sorts the
// FDEs itself on first use, and nothing else reads a patch's tables).
//
// Not loaded: .suture.* (records for the engine), notes, .comment.
// Thread-local variables defined by the patch, IFUNCs defined by the patch and
// constructor/destructor arrays are refused: nothing would allocate, resolve or
// run them.
#include "link/link-patch.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "common/error.h"
#include "common/page.h"
#include "link/x86-64-relocations.h"

namespace suture::link {
namespace {

constexpr uint64_t kTableAlign = 16;
constexpr uint64_t kSlotSize = 8;
constexpr uint64_t kPairSize = 16;

constexpr uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) & ~(alignment - 1); }

enum class Part { text, rodata, data };

struct PlacedSection {
  Part part = Part::text;
  uint64_t offset = 0;
};

// Phase 1's result.
struct Layout {
  std::vector<std::optional<PlacedSection>> sections;  // by section index
  std::unordered_map<size_t, uint64_t> commons;        // SHN_COMMON symbol index -> offset in data
  uint64_t text = 0, rodata = 0, data = 0;             // bytes used by sections and commons
  uint64_t stub_slots = 0;                              // relocations that may need a far-call stub
  uint64_t table = 0;                                   // bytes of GOT slots and TLS pairs they may need
  uint64_t eh_frame = 0, eh_frame_size = 0;             // in rodata, terminator included; size 0 if none
  uint64_t unwind_block = 0;                            // in data
};

constexpr uint64_t kEhFrameTerminator = 4;  // a CIE/FDE length word of zero

bool is_eh_frame(const elf::Section& section) { return section.type == SHT_X86_64_UNWIND || section.name == ".eh_frame"; }

// Whether a section goes into the patch region at all.
bool is_loaded(const elf::Section& section) {
  if (!(section.flags & SHF_ALLOC)) return false;
  if (section.type == SHT_NOTE || section.type == SHT_GROUP) return false;
  const std::string_view name = section.name;
  if (name.starts_with(".suture.") || name.starts_with(".note") || name == ".comment") return false;
  if (section.flags & SHF_TLS) return false;  // refused in refuse_unsupported()
  return true;
}

// .data.rel.ro is writable only so that a dynamic linker can relocate it; we
// relocate before the bytes are ever mapped, so it can be read-only (RELRO
// without the mprotect). The same holds for DW.ref.__gxx_personality_v0, the
// pointer to the personality routine that .eh_frame refers to indirectly.
Part part_of(const elf::Section& section) {
  if (section.flags & SHF_EXECINSTR) return Part::text;
  const std::string_view name = section.name;
  const bool relro = name == ".data.rel.ro" || name.starts_with(".data.rel.ro.") ||
                     name.find(".DW.ref.") != std::string_view::npos;
  if ((section.flags & SHF_WRITE) && !relro) return Part::data;
  return Part::rodata;
}

uint64_t checked_alignment(const elf::ElfFile& object, std::string_view what, uint64_t alignment) {
  if (alignment == 0) alignment = 1;
  if ((alignment & (alignment - 1)) != 0) fail("{}: {}: alignment {} is not a power of two", object.name(), what, alignment);
  if (alignment > kPageSize)
    fail("{}: {}: alignment {} exceeds the page size; not supported", object.name(), what, alignment);
  return alignment;
}

Layout lay_out(const elf::ElfFile& object) {
  Layout layout;
  layout.sections.resize(object.sections().size());
  for (const elf::Section& section : object.sections()) {
    if (section.index >= layout.sections.size() || !is_loaded(section) || is_eh_frame(section)) continue;
    const Part part = part_of(section);
    uint64_t& cursor = part == Part::text ? layout.text : part == Part::rodata ? layout.rodata : layout.data;
    cursor = align_up(cursor, checked_alignment(object, section.name, section.align));
    layout.sections[section.index] = PlacedSection{part, cursor};
    cursor += section.size;
  }
  // Unwind tables: one run of records and one terminator, so that the run can
  // be registered as one .eh_frame.
  for (const elf::Section& section : object.sections()) {
    if (section.index >= layout.sections.size() || !is_loaded(section) || !is_eh_frame(section)) continue;
    if (section.type == SHT_NOBITS || section.size % 4 != 0)
      fail("{}: {}: size {} is not a whole number of CIE/FDE records", object.name(), section.name, section.size);
    if (layout.eh_frame_size == 0) {
      layout.rodata = align_up(layout.rodata, 8);
      layout.eh_frame = layout.rodata;
    }
    layout.sections[section.index] = PlacedSection{Part::rodata, layout.rodata};
    layout.rodata += section.size;
    layout.eh_frame_size = layout.rodata - layout.eh_frame;
  }
  if (layout.eh_frame_size != 0) {
    layout.rodata += kEhFrameTerminator;  // zero, as rodata starts
    layout.eh_frame_size += kEhFrameTerminator;
  }
  // Tentative definitions (-fcommon) get their space after the data sections.
  for (const elf::Symbol& symbol : object.symbols()) {
    if (symbol.shndx != SHN_COMMON) continue;
    layout.data = align_up(layout.data, checked_alignment(object, symbol.name, symbol.value));
    layout.commons[symbol.index] = layout.data;
    layout.data += symbol.size;
  }
  layout.data = align_up(layout.data, 16);
  layout.unwind_block = layout.data;
  layout.data += kUnwindBlockSize;
  // Far references, counted per relocation: an upper bound, as the link
  // deduplicates them per target.
  for (const elf::Section& section : object.sections()) {
    if (section.index >= layout.sections.size() || !layout.sections[section.index]) continue;
    for (const elf::Relocation& rel : object.relocations_for(section)) {
      switch (slot_kind(rel.type)) {
        case SlotKind::none: break;
        case SlotKind::address:
        case SlotKind::tp_offset: layout.table += kSlotSize; break;
        case SlotKind::tls_pair: layout.table += kPairSize; break;
      }
      if (may_need_stub(rel.type)) {
        ++layout.stub_slots;
        layout.table += kSlotSize;
      }
    }
  }
  return layout;
}

uint64_t stubs_offset(const Layout& layout) { return align_up(layout.text, kTableAlign); }
uint64_t table_offset(const Layout& layout) { return align_up(layout.rodata, kTableAlign); }

PartSizes sizes_of(const Layout& layout) {
  PartSizes sizes;
  sizes.text = align_up(stubs_offset(layout) + layout.stub_slots * kStubSize, kPageSize);
  sizes.rodata = align_up(table_offset(layout) + layout.table, kPageSize);
  sizes.data = align_up(layout.data, kPageSize);
  return sizes;
}

// What a patch cannot bring along.
void refuse_unsupported(const elf::ElfFile& object) {
  if (object.type() != ET_REL) fail("{}: not a relocatable object (compile the patch with -c)", object.name());
  if (object.machine() != EM_X86_64) fail("{}: not an x86-64 object", object.name());
  for (const elf::Symbol& symbol : object.symbols()) {
    if (!symbol.defined()) continue;
    if (symbol.type == STT_TLS) fail("{}: '{}': new thread-local variables are not supported", object.name(), symbol.name);
    if (symbol.type == STT_GNU_IFUNC)
      fail("{}: '{}': IFUNCs defined by a patch are not supported", object.name(), symbol.name);
  }
  for (const elf::Section& section : object.sections()) {
    if (!(section.flags & SHF_ALLOC) || section.size == 0) continue;
    if (section.flags & SHF_TLS) fail("{}: {}: new thread-local variables are not supported", object.name(), section.name);
    if (section.type == SHT_INIT_ARRAY || section.type == SHT_PREINIT_ARRAY || section.type == SHT_FINI_ARRAY ||
        section.name.starts_with(".ctors") || section.name.starts_with(".dtors"))
      fail("{}: {}: constructors and destructors of a patch would never run (global objects with constructors, "
           "__attribute__((constructor)) are not supported)",
           object.name(), section.name);
  }
}

// The GOT (slots and TLS pairs after the rodata sections; GOT is its start) and
// the far-call stubs (after the text sections). Entries are final when made.
class FarReferences {
 public:
  FarReferences(LinkedPatch& out, const Layout& layout)
      : out_(out), table_start_(table_offset(layout)), table_next_(table_start_), stub_next_(stubs_offset(layout)) {}

  uint64_t GOT() const { return out_.placement.rodata.value() + table_start_; }

  // G of an 8-byte slot holding `value` (an address, or a TP offset).
  int64_t slot(uint64_t value, bool tp_offset) {
    auto& slots = tp_offset ? tp_offset_slots_ : address_slots_;
    if (auto it = slots.find(value); it != slots.end()) return it->second;
    const int64_t G = allocate(kSlotSize);
    write64(G, value);
    slots.emplace(value, G);
    return G;
  }

  // G of a tls_index {module id, offset} for __tls_get_addr.
  int64_t tls_pair(uint64_t module, uint64_t offset) {
    const auto key = std::make_pair(module, offset);
    if (auto it = tls_pairs_.find(key); it != tls_pairs_.end()) return it->second;
    const int64_t G = allocate(kPairSize);
    write64(G, module);
    write64(G + 8, offset);
    tls_pairs_.emplace(key, G);
    return G;
  }

  // Address of a stub jumping to S through an address slot.
  uint64_t stub(uint64_t S) {
    if (auto it = stubs_.find(S); it != stubs_.end()) return it->second;
    const int64_t G = slot(S, false);
    if (stub_next_ + kStubSize > out_.text.size()) fail("internal error: far-call stubs exceed measure()");
    const uint64_t at = out_.placement.text.value() + stub_next_;
    const auto bytes = encode_far_stub(at, GOT() + static_cast<uint64_t>(G));
    std::memcpy(out_.text.data() + stub_next_, bytes.data(), bytes.size());
    stub_next_ += kStubSize;
    stubs_.emplace(S, at);
    return at;
  }

 private:
  int64_t allocate(uint64_t size) {
    if (table_next_ + size > out_.rodata.size()) fail("internal error: GOT exceeds measure()");
    const auto G = static_cast<int64_t>(table_next_ - table_start_);
    table_next_ += size;
    return G;
  }
  void write64(int64_t G, uint64_t value) {
    std::memcpy(out_.rodata.data() + table_start_ + static_cast<uint64_t>(G), &value, sizeof value);
  }

  LinkedPatch& out_;
  uint64_t table_start_, table_next_, stub_next_;
  std::unordered_map<uint64_t, int64_t> address_slots_, tp_offset_slots_;
  std::map<std::pair<uint64_t, uint64_t>, int64_t> tls_pairs_;
  std::unordered_map<uint64_t, uint64_t> stubs_;
};

// What one symbol of the patch stands for, once resolved.
struct Target {
  uint64_t S = 0;
  uint64_t Z = 0;
  bool function = false;  // a call to it may go through a stub
  bool tls = false;       // S is an offset in the block of symbols.objects()[owner]
  size_t owner = 0;
};

class Linker {
 public:
  Linker(const elf::ElfFile& object, const TargetSymbols& symbols, size_t patched,
         const std::map<std::string, std::pair<std::string, std::string>>& bindings, const Layout& layout,
         LinkedPatch& out)
      : object_(object), symbols_(symbols), patched_(patched), bindings_(bindings), layout_(layout), out_(out),
        far_(out, layout), targets_(object.symbols().size()) {}

  void copy_sections() {
    for (const elf::Section& section : object_.sections()) {
      const auto& placed = layout_.sections[section.index];
      if (!placed || section.type == SHT_NOBITS) continue;
      const auto bytes = object_.section_bytes(section);
      std::memcpy(part(placed->part).data() + placed->offset, bytes.data(), bytes.size());
    }
  }

  void relocate() {
    for (const elf::Section& section : object_.sections()) {
      const auto& placed = layout_.sections[section.index];
      if (!placed) continue;
      const auto& relocations = object_.relocations_for(section);
      if (relocations.empty()) continue;
      if (section.type == SHT_NOBITS) fail("{}: {}: relocations against a section without bytes", object_.name(), section.name);
      std::span<uint8_t> bytes = std::span(part(placed->part)).subspan(placed->offset, section.size);
      for (const elf::Relocation& rel : relocations) relocate_one(section, bytes, rel);
    }
  }

  void record_definitions() {
    for (const elf::Symbol& symbol : object_.symbols()) {
      if (symbol.name.empty() || (symbol.type != STT_FUNC && symbol.type != STT_OBJECT)) continue;
      if (std::optional<uint64_t> at = defined_address(symbol)) out_.defined.emplace(symbol.name, RemoteAddr(*at));
    }
  }

 private:
  std::vector<uint8_t>& part(Part p) { return p == Part::text ? out_.text : p == Part::rodata ? out_.rodata : out_.data; }

  RemoteAddr part_address(Part p) const {
    return p == Part::text ? out_.placement.text : p == Part::rodata ? out_.placement.rodata : out_.placement.data;
  }

  std::optional<uint64_t> section_address(size_t index) const {
    if (index >= layout_.sections.size() || !layout_.sections[index]) return std::nullopt;
    const PlacedSection& placed = *layout_.sections[index];
    return part_address(placed.part).value() + placed.offset;
  }

  // Where a symbol the patch defines ends up; nullopt if its section is not loaded.
  std::optional<uint64_t> defined_address(const elf::Symbol& symbol) const {
    if (symbol.shndx == SHN_COMMON) return out_.placement.data.value() + layout_.commons.at(symbol.index);
    if (symbol.shndx == SHN_ABS) return symbol.value;
    if (symbol.shndx == SHN_UNDEF || symbol.shndx >= SHN_LORESERVE) return std::nullopt;
    if (std::optional<uint64_t> base = section_address(symbol.shndx)) return *base + symbol.value;
    return std::nullopt;
  }

  std::string_view display_name(const elf::Symbol& symbol) const {
    if (symbol.type == STT_SECTION && symbol.shndx < object_.sections().size())
      return object_.sections()[symbol.shndx].name;
    return symbol.name;
  }

  const Target& target(uint32_t index) {
    if (!targets_[index]) targets_[index] = resolve(object_.symbols()[index]);
    return *targets_[index];
  }

  // Phase 3 for one symbol.
  Target resolve(const elf::Symbol& symbol) {
    Target t;
    t.Z = symbol.size;
    t.function = symbol.type == STT_FUNC;
    if (symbol.index == 0) return t;  // no symbol: S = 0
    if (symbol.defined()) {
      std::optional<uint64_t> at = defined_address(symbol);
      if (!at) {
        const std::string section =
            symbol.shndx < object_.sections().size() ? object_.sections()[symbol.shndx].name : "?";
        fail("{}: '{}' is in section {}, which is not loaded", object_.name(), display_name(symbol), section);
      }
      t.S = *at;
      return t;
    }
    // Names the static linker would define.
    if (symbol.name == "_GLOBAL_OFFSET_TABLE_") {
      t.S = far_.GOT();
      return t;
    }
    if (symbol.name == "_TLS_MODULE_BASE_") {  // local-dynamic: the block of the object the patch lives in
      t.tls = true;
      t.owner = patched_;
      return t;
    }
    try {
      std::optional<ResolvedSymbol> r;
      if (auto it = bindings_.find(symbol.name); it != bindings_.end())
        r = symbols_.resolve_in_object(it->second.first, it->second.second, patched_);
      else if (symbol.bind == STB_WEAK)
        r = symbols_.find(symbol.name, patched_);  // an undefined weak reference may stay null
      else
        r = symbols_.resolve(symbol.name, patched_);
      if (!r) return t;
      t.S = r->address.value();
      t.Z = r->size;
      t.function = r->type == STT_FUNC;
      t.tls = r->tls;
      t.owner = r->object;
      out_.imports.emplace(symbol.name, r->address);
    } catch (const Error& e) {
      fail("{}: {}", object_.name(), e.what());
    }
    return t;
  }

  // A PC32 that is the rel32 of a call, jmp or jcc (e8, e9, 0f 8x): the only
  // PC32 a stub can stand in for. A rip-relative operand is preceded by a ModRM
  // byte with mod = 00, which none of these opcodes is.
  static bool is_branch_rel32(std::span<const uint8_t> bytes, uint64_t offset) {
    if (offset >= 1 && offset <= bytes.size() && (bytes[offset - 1] == 0xe8 || bytes[offset - 1] == 0xe9)) return true;
    return offset >= 2 && offset <= bytes.size() && bytes[offset - 2] == 0x0f && (bytes[offset - 1] & 0xf0) == 0x80;
  }

  std::string tls_owner_name(const Target& t) const {
    const std::string& path = symbols_.objects()[t.owner].path;
    return path.substr(path.rfind('/') + 1);
  }

  // Phase 4 for one relocation.
  void relocate_one(const elf::Section& section, std::span<uint8_t> bytes, const elf::Relocation& rel) {
    const elf::Symbol& symbol = object_.symbols()[rel.symbol];
    const RelocationSite site = {.object = object_.name(),
                                 .section = section.name,
                                 .offset = rel.offset,
                                 .type = rel.type,
                                 .symbol = display_name(symbol)};
    if (rel.type == R_X86_64_NONE) return;
    const Target& t = target(rel.symbol);
    RelocationValues v = {.S = t.S,
                          .A = rel.addend,
                          .P = *section_address(section.index) + rel.offset,
                          .Z = t.Z,
                          .GOT = far_.GOT(),
                          .L = t.S};

    const bool size_only = rel.type == R_X86_64_SIZE32 || rel.type == R_X86_64_SIZE64;
    if (is_tls_relocation(rel.type) && !t.tls) fail("{}: the symbol is not thread-local", describe(site));
    if (!is_tls_relocation(rel.type) && t.tls && !size_only)
      fail("{}: the symbol is thread-local; only TLS relocations may refer to it", describe(site));

    const TargetObject* owner = t.tls ? &symbols_.objects()[t.owner] : nullptr;
    if (owner && owner->tls_offset) v.TP = -*owner->tls_offset;
    if ((rel.type == R_X86_64_TPOFF32 || rel.type == R_X86_64_TPOFF64) && t.owner != 0)
      fail("{}: thread-local '{}' of {}: local-exec TLS reaches only the executable's own variables; compile the "
           "patch with -fPIC",
           describe(site), site.symbol, tls_owner_name(t));

    switch (slot_kind(rel.type)) {
      case SlotKind::none:
        break;
      case SlotKind::address:
        v.G = far_.slot(t.S, false);
        break;
      case SlotKind::tls_pair:
        if (owner->tls_modid == 0) fail("{}: {} has no TLS module id", describe(site), tls_owner_name(t));
        // TLSLD asks for the block itself: offset 0, DTPOFF relocations add the rest.
        v.G = far_.tls_pair(owner->tls_modid, rel.type == R_X86_64_TLSLD ? 0 : t.S);
        break;
      case SlotKind::tp_offset:
        if (!v.TP)
          fail("{}: thread-local '{}' of {} is in dynamic TLS; compile the patch with {}", describe(site), site.symbol,
               tls_owner_name(t),
               rel.type == R_X86_64_GOTTPOFF ? "-fPIC (general-dynamic TLS)" : "-mtls-dialect=gnu (general-dynamic TLS)");
        v.G = far_.slot(t.S + static_cast<uint64_t>(*v.TP), true);
        break;
    }

    // A call that cannot reach its target goes through a stub. For PLT32 the
    // psABI's L is the stub; a PC32 call knows no L, so its S becomes the stub
    // (the callee cannot tell the difference).
    if (may_need_stub(rel.type) && !fits_int32(static_cast<int64_t>(t.S + static_cast<uint64_t>(rel.addend) - v.P))) {
      if (rel.type == R_X86_64_PLT32) v.L = far_.stub(t.S);
      else if (t.function && is_branch_rel32(bytes, rel.offset)) v.S = far_.stub(t.S);
    }
    apply_relocation(bytes, site, v);
  }

  const elf::ElfFile& object_;
  const TargetSymbols& symbols_;
  size_t patched_;
  const std::map<std::string, std::pair<std::string, std::string>>& bindings_;
  const Layout& layout_;
  LinkedPatch& out_;
  FarReferences far_;
  std::vector<std::optional<Target>> targets_;  // by symbol index, filled on first reference
};

}  // namespace

PartSizes measure(const elf::ElfFile& object) { return sizes_of(lay_out(object)); }

LinkedPatch link_patch(const elf::ElfFile& object, const TargetSymbols& symbols, size_t patched,
                       const std::map<std::string, std::pair<std::string, std::string>>& bindings,
                       const Placement& placement) {
  // Refuse what cannot work before doing any work.
  refuse_unsupported(object);
  for (RemoteAddr a : {placement.text, placement.rodata, placement.data})
    if (a.value() % kPageSize != 0) fail("{}: placement {} is not page aligned", object.name(), a);

  // 1. Lay out: the same layout measure() sized.
  const Layout layout = lay_out(object);
  LinkedPatch out;
  out.placement = placement;
  out.sizes = sizes_of(layout);
  out.text.assign(out.sizes.text, 0xcc);  // int3 between functions and after the stubs
  out.rodata.assign(out.sizes.rodata, 0);
  out.data.assign(out.sizes.data, 0);  // .bss and commons are zero

  Linker linker(object, symbols, patched, bindings, layout, out);
  // 2. Copy: the local copies start as the object's bytes.
  linker.copy_sections();
  // 3 and 4. Resolve what each relocation refers to, and apply it.
  linker.relocate();
  // The patch's own symbols, for redirects and for later patches.
  linker.record_definitions();
  // What registering its unwind tables needs.
  out.eh_frame = {placement.rodata + static_cast<int64_t>(layout.eh_frame), layout.eh_frame_size};
  out.unwind_block = {placement.data + static_cast<int64_t>(layout.unwind_block), kUnwindBlockSize};
  return out;
}

}  // namespace suture::link
