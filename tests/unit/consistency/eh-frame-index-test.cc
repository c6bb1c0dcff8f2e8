// The index of an .eh_frame, judged against the search table the linker wrote
// for this very test program (.eh_frame_hdr), and against broken lists.
#include "consistency/eh-frame-index.h"

#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"

namespace suture::consistency {
namespace {

// What the linker wrote: the .eh_frame it indexes and its (pc, fde) pairs.
struct LinkerTable {
  uint64_t eh_frame = 0;
  std::vector<std::pair<uint64_t, uint64_t>> pairs;
};

int find_own_table(dl_phdr_info* info, size_t, void* out) {
  auto* table = static_cast<LinkerTable*>(out);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    if (info->dlpi_phdr[i].p_type != PT_GNU_EH_FRAME) continue;
    const auto* hdr = reinterpret_cast<const uint8_t*>(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    // version 1; eh_frame_ptr pcrel|sdata4, fde_count udata4, table datarel|sdata4: what ld writes.
    if (hdr[0] != 1 || hdr[1] != (DW_EH_PE_pcrel | DW_EH_PE_sdata4) || hdr[2] != DW_EH_PE_udata4 ||
        hdr[3] != (DW_EH_PE_datarel | DW_EH_PE_sdata4))
      return 1;
    int32_t eh_frame_offset;
    uint32_t count;
    std::memcpy(&eh_frame_offset, hdr + 4, 4);
    std::memcpy(&count, hdr + 8, 4);
    table->eh_frame = reinterpret_cast<uint64_t>(hdr + 4) + static_cast<int64_t>(eh_frame_offset);
    const auto base = reinterpret_cast<uint64_t>(hdr);
    for (uint32_t k = 0; k < count; ++k) {
      int32_t pc, fde;
      std::memcpy(&pc, hdr + 12 + 8 * k, 4);
      std::memcpy(&fde, hdr + 16 + 8 * k, 4);
      table->pairs.emplace_back(base + static_cast<int64_t>(pc), base + static_cast<int64_t>(fde));
    }
    return 1;  // the first object is the program itself
  }
  return 1;
}

bool read_own(uint64_t address, void* out, size_t size) {
  std::memcpy(out, reinterpret_cast<const void*>(address), size);
  return true;
}

__attribute__((noinline)) int described(int x) { return x * 3 + 1; }

TEST(EhFrameIndex, AgreesWithTheLinkersTable) {
  LinkerTable linker;
  dl_iterate_phdr(find_own_table, &linker);
  ASSERT_NE(linker.eh_frame, 0u) << "this program has no .eh_frame_hdr of the usual form";
  ASSERT_FALSE(linker.pairs.empty());

  auto entries = index_eh_frame(read_own, linker.eh_frame);
  ASSERT_EQ(entries.size(), linker.pairs.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(entries[i].pc_begin, linker.pairs[i].first) << "entry " << i;
    EXPECT_EQ(entries[i].fde, linker.pairs[i].second) << "entry " << i;
    EXPECT_GT(entries[i].pc_end, entries[i].pc_begin);
  }
  auto here = reinterpret_cast<uint64_t>(&described);
  EXPECT_TRUE(std::any_of(entries.begin(), entries.end(),
                          [&](const FdeEntry& e) { return here >= e.pc_begin && here < e.pc_end; }));
}

TEST(EhFrameIndex, DecodesEachFixedSizeForm) {
  const std::vector<uint8_t> bytes = {0xfe, 0xff, 0xff, 0xff, 0x10, 0x00, 0xfc, 0xff, 1, 2, 3, 4, 5, 6, 7, 8};
  size_t at = 0;
  EXPECT_EQ(decode_eh_pointer(bytes, at, 0x1000, DW_EH_PE_sdata4), uint64_t(-2));
  EXPECT_EQ(at, 4u);
  EXPECT_EQ(decode_eh_pointer(bytes, at, 0x1000, DW_EH_PE_udata2), 0x10u);
  EXPECT_EQ(decode_eh_pointer(bytes, at, 0x1000, DW_EH_PE_pcrel | DW_EH_PE_sdata2), 0x1006u - 4);
  EXPECT_EQ(decode_eh_pointer(bytes, at, 0x1000, DW_EH_PE_absptr), 0x0807060504030201u);
  EXPECT_EQ(at, 16u);
  at = 0;
  EXPECT_EQ(decode_eh_pointer(bytes, at, 0, DW_EH_PE_datarel | DW_EH_PE_sdata4, 0x5000), 0x5000u - 2);
  at = 0;
  EXPECT_FALSE(decode_eh_pointer(bytes, at, 0, DW_EH_PE_datarel | DW_EH_PE_sdata4).has_value());  // no base
  EXPECT_FALSE(decode_eh_pointer(bytes, at, 0, 0x01 /* uleb128 */).has_value());
  at = 12;
  EXPECT_FALSE(decode_eh_pointer(bytes, at, 0, DW_EH_PE_udata8).has_value());  // 4 bytes left
  EXPECT_EQ(at, 12u);
}

// A CIE ("zR", FDE pointers pcrel|sdata4) and one FDE, then `tail`.
std::vector<uint8_t> small_list(std::vector<uint8_t> tail = {0, 0, 0, 0}) {
  std::vector<uint8_t> cie = {0, 0, 0, 0,  // id: a CIE
                              1, 'z', 'R', 0, 1, 0x78, 16, 1, DW_EH_PE_pcrel | DW_EH_PE_sdata4, 0, 0, 0};
  std::vector<uint8_t> out;
  auto word = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  word(static_cast<uint32_t>(cie.size()));
  out.insert(out.end(), cie.begin(), cie.end());
  size_t fde = out.size();
  word(16);                                         // length
  word(static_cast<uint32_t>(fde + 4));             // back to the CIE
  word(static_cast<uint32_t>(0x1000 - (fde + 8)));  // pc_begin: the list's start + 0x1000, pc-relative
  word(0x40);                                       // pc_range
  word(0);                                          // augmentation length and padding
  out.insert(out.end(), tail.begin(), tail.end());
  return out;
}

TEST(EhFrameIndex, ReadsAListOfItsOwnAndRefusesBrokenOnes) {
  std::vector<uint8_t> bytes = small_list();
  auto base = reinterpret_cast<uint64_t>(bytes.data());
  auto reader = [&](uint64_t address, void* out, size_t size) {
    if (address < base || address + size > base + bytes.size()) return false;
    std::memcpy(out, reinterpret_cast<const void*>(address), size);
    return true;
  };
  auto entries = index_eh_frame(reader, base);
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].pc_begin, base + 0x1000);
  EXPECT_EQ(entries[0].pc_end, base + 0x1040);
  EXPECT_EQ(entries[0].fde, base + 20);

  auto refused = [&](const char* what) {
    try {
      index_eh_frame(reader, base);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted (") + what + ")";
  };
  bytes = small_list({});  // no terminator: the list runs into memory we cannot read
  base = reinterpret_cast<uint64_t>(bytes.data());
  EXPECT_NE(refused("no terminator").find("cannot read"), std::string::npos);

  bytes = small_list();
  bytes[24] = 0xff;  // the FDE's CIE pointer now leads before the list
  base = reinterpret_cast<uint64_t>(bytes.data());
  EXPECT_NE(refused("bad CIE pointer").find("leads nowhere"), std::string::npos);

  bytes = small_list();
  bytes[16] = DW_EH_PE_datarel | DW_EH_PE_sdata4;  // an encoding .eh_frame never uses for code
  base = reinterpret_cast<uint64_t>(bytes.data());
  EXPECT_NE(refused("datarel").find("not supported"), std::string::npos);

  bytes = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
  base = reinterpret_cast<uint64_t>(bytes.data());
  EXPECT_NE(refused("64-bit").find("64-bit"), std::string::npos);
}

}  // namespace
}  // namespace suture::consistency
