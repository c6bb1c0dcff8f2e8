// The search table of an .eh_frame that no .eh_frame_hdr comes with: a patch's
// code and its thunks live in a mapping of suture's own, not in an ELF object,
// and their .eh_frame lists (one stream of CIEs and FDEs each, ending with a
// zero length word) are all the target has of them. Indexed here, suture's own
// unwinder steps through their frames like through any object's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

namespace suture::consistency {

// Pointer encodings of .eh_frame and .eh_frame_hdr (LSB, "DWARF Extensions"),
// by their spec names: the value's form in the low nibble, what it is relative
// to in the high one.
constexpr uint8_t DW_EH_PE_absptr = 0x00;
constexpr uint8_t DW_EH_PE_udata2 = 0x02;
constexpr uint8_t DW_EH_PE_udata4 = 0x03;
constexpr uint8_t DW_EH_PE_udata8 = 0x04;
constexpr uint8_t DW_EH_PE_sdata2 = 0x0a;
constexpr uint8_t DW_EH_PE_sdata4 = 0x0b;
constexpr uint8_t DW_EH_PE_sdata8 = 0x0c;
constexpr uint8_t DW_EH_PE_pcrel = 0x10;
constexpr uint8_t DW_EH_PE_datarel = 0x30;
constexpr uint8_t DW_EH_PE_omit = 0xff;

// The size of a pointer encoded as `encoding` in one of its fixed-size forms
// (absptr, [us]data2/4/8); 0 for any other form.
size_t eh_pointer_size(uint8_t encoding);

// Decodes the pointer encoded as `encoding` at `bytes[at]`, advancing `at`;
// `address` is where bytes[0] lies in the target. Absolute, pc-relative and,
// given `datarel`, data-relative values; nullopt for other forms or bytes that
// end too soon.
std::optional<uint64_t> decode_eh_pointer(std::span<const uint8_t> bytes, size_t& at, uint64_t address,
                                          uint8_t encoding, std::optional<uint64_t> datarel = std::nullopt);

// One FDE: the code [pc_begin, pc_end) it describes, and where it starts.
struct FdeEntry {
  uint64_t pc_begin = 0;
  uint64_t pc_end = 0;
  uint64_t fde = 0;
};

// Reads `size` bytes at `address` into `out`; false if they cannot be read.
using MemoryReader = std::function<bool(uint64_t address, void* out, size_t size)>;

// The FDEs of the list at `eh_frame`, sorted by pc_begin, FDEs of empty ranges
// left out. Throws Error("...eh_frame at 0x...+0x40: what is wrong") for a list
// it cannot read (unreadable memory, 64-bit lengths, a record past `limit`
// bytes, a CIE pointer that leads nowhere, a pointer encoding other than
// absolute or pc-relative fixed-size ones).
std::vector<FdeEntry> index_eh_frame(const MemoryReader& read, uint64_t eh_frame, size_t limit = 16u << 20);

}  // namespace suture::consistency
