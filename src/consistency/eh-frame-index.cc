#include "consistency/eh-frame-index.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>

#include <fmt/format.h>

#include "common/error.h"

namespace suture::consistency {
namespace {

// What Record throws; the indexer says where.
struct BadRecord {
  std::string what;
};

// One record (CIE or FDE) read whole, and a cursor over it.
class Record {
 public:
  Record(std::vector<uint8_t> bytes, uint64_t address) : bytes_(std::move(bytes)), address_(address) {}
  uint64_t address_of(size_t at) const { return address_ + at; }

  template <typename T>
  T fixed(size_t& at) const {
    need(at, sizeof(T));
    T value;
    std::memcpy(&value, bytes_.data() + at, sizeof value);
    at += sizeof value;
    return value;
  }
  uint64_t uleb(size_t& at) const {
    uint64_t value = 0;
    for (int shift = 0;; shift += 7) {
      auto byte = fixed<uint8_t>(at);
      if (shift < 64) value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
  }
  int64_t sleb(size_t& at) const {
    uint64_t value = 0;
    int shift = 0;
    uint8_t byte;
    do {
      byte = fixed<uint8_t>(at);
      if (shift < 64) value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      shift += 7;
    } while (byte & 0x80);
    if (shift < 64 && (byte & 0x40)) value |= ~uint64_t{0} << shift;  // sign-extend
    return static_cast<int64_t>(value);
  }
  std::string string(size_t& at) const {
    std::string text;
    for (char c; (c = static_cast<char>(fixed<uint8_t>(at))) != '\0';) text += c;
    return text;
  }
  // A pointer encoded as `encoding`; `range`: a length, to which no base applies.
  uint64_t pointer(size_t& at, uint8_t encoding, bool range = false) const {
    if (range) encoding &= 0x0f;
    if (eh_pointer_size(encoding) == 0) throw BadRecord{fmt::format("pointer encoding {:#x} not supported", encoding)};
    need(at, eh_pointer_size(encoding));
    auto value = decode_eh_pointer(bytes_, at, address_, encoding);
    if (!value) throw BadRecord{fmt::format("pointer encoding {:#x} not supported", encoding)};
    return *value;
  }

 private:
  void need(size_t at, size_t n) const {
    if (at + n > bytes_.size()) throw BadRecord{"the record ends early"};
  }
  std::vector<uint8_t> bytes_;  // after the length word
  uint64_t address_;            // of bytes_[0]
};

struct Cie {
  uint8_t fde_encoding = DW_EH_PE_absptr;
};

class Indexer {
 public:
  Indexer(const MemoryReader& read, uint64_t eh_frame, size_t limit)
      : read_(read), start_(eh_frame), limit_(limit) {}

  std::vector<FdeEntry> run() {
    std::vector<FdeEntry> entries;
    for (uint64_t at = start_;;) {
      current_ = at;
      uint32_t length = 0;
      load(at, &length, sizeof length);
      if (length == 0) break;  // the terminator
      if (length == 0xffffffff) throw here("64-bit record lengths are not supported");
      if (at + 4 + length - start_ > limit_) throw here("the list runs past its end");
      Record record(bytes(at + 4, length), at + 4);
      try {
        size_t cursor = 0;
        uint32_t id = record.fixed<uint32_t>(cursor);
        if (id != 0) {  // an FDE: id is the distance back to its CIE
          const Cie& cie = cie_at(record.address_of(0) - id);
          FdeEntry e;
          e.fde = at;
          e.pc_begin = record.pointer(cursor, cie.fde_encoding);
          e.pc_end = e.pc_begin + record.pointer(cursor, cie.fde_encoding, true);
          if (e.pc_end > e.pc_begin) entries.push_back(e);
        }
      } catch (const BadRecord& bad) {
        throw here(bad.what);
      }
      at += 4 + length;
    }
    std::sort(entries.begin(), entries.end(),
              [](const FdeEntry& a, const FdeEntry& b) { return a.pc_begin < b.pc_begin; });
    return entries;
  }

 private:
  Error here(const std::string& what) const {
    return Error(fmt::format(".eh_frame at {:#x}+{:#x}: {}", start_, current_ - start_, what));
  }

  void load(uint64_t address, void* out, size_t size) const {
    if (!read_(address, out, size)) throw here(fmt::format("cannot read {} bytes at {:#x}", size, address));
  }

  std::vector<uint8_t> bytes(uint64_t address, size_t size) const {
    std::vector<uint8_t> out(size);
    load(address, out.data(), size);
    return out;
  }

  const Cie& cie_at(uint64_t address) {
    if (auto it = cies_.find(address); it != cies_.end()) return it->second;
    if (address < start_ || address + 8 > start_ + limit_)
      throw here(fmt::format("CIE pointer to {:#x} leads nowhere", address));
    uint32_t length = 0;
    load(address, &length, sizeof length);
    if (length == 0 || length == 0xffffffff) throw here(fmt::format("no CIE at {:#x}", address));
    Record record(bytes(address + 4, length), address + 4);
    Cie cie;
    try {
      size_t at = 0;
      if (record.fixed<uint32_t>(at) != 0) throw BadRecord{"not a CIE"};
      auto version = record.fixed<uint8_t>(at);
      std::string augmentation = record.string(at);
      if (augmentation.find("eh") != std::string::npos) throw BadRecord{"the \"eh\" augmentation is not supported"};
      record.uleb(at);  // code alignment
      record.sleb(at);  // data alignment
      if (version == 1)
        record.fixed<uint8_t>(at);  // return address register
      else
        record.uleb(at);
      if (!augmentation.empty() && augmentation[0] == 'z') {
        record.uleb(at);  // augmentation data length
        for (char c : augmentation.substr(1)) {
          if (c == 'R') {
            cie.fde_encoding = record.fixed<uint8_t>(at);
          } else if (c == 'P') {
            auto encoding = record.fixed<uint8_t>(at);
            if (encoding != DW_EH_PE_omit) record.pointer(at, encoding & 0x7f);  // the personality: skipped
          } else if (c == 'L') {
            record.fixed<uint8_t>(at);  // LSDA encoding: the FDE's own business
          } else if (c != 'S' && c != 'B') {
            break;  // unknown: the length above would let us skip, and R comes first in practice
          }
        }
      }
    } catch (const BadRecord& bad) {
      throw here(fmt::format("CIE at {:#x}: {}", address, bad.what));
    }
    if (cie.fde_encoding == DW_EH_PE_omit) throw here(fmt::format("CIE at {:#x} omits FDE addresses", address));
    return cies_.emplace(address, cie).first->second;
  }

  const MemoryReader& read_;
  uint64_t start_;
  size_t limit_;
  uint64_t current_ = 0;
  std::map<uint64_t, Cie> cies_;
};

}  // namespace

size_t eh_pointer_size(uint8_t encoding) {
  switch (encoding & 0x0f) {
    case DW_EH_PE_absptr:
    case DW_EH_PE_udata8:
    case DW_EH_PE_sdata8: return 8;
    case DW_EH_PE_udata4:
    case DW_EH_PE_sdata4: return 4;
    case DW_EH_PE_udata2:
    case DW_EH_PE_sdata2: return 2;
    default: return 0;
  }
}

std::optional<uint64_t> decode_eh_pointer(std::span<const uint8_t> bytes, size_t& at, uint64_t address,
                                          uint8_t encoding, std::optional<uint64_t> datarel) {
  const size_t size = eh_pointer_size(encoding);
  if (size == 0 || at > bytes.size() || bytes.size() - at < size) return std::nullopt;
  const uint64_t field = address + at;
  uint64_t raw = 0;
  std::memcpy(&raw, bytes.data() + at, size);  // little-endian: the low bytes
  if (size < 8 && (encoding & 0x08)) {          // sdata2/4: sign-extend
    const uint64_t sign = uint64_t{1} << (8 * size - 1);
    raw = (raw ^ sign) - sign;
  }
  uint64_t value;
  switch (encoding & 0x70) {
    case 0: value = raw; break;
    case DW_EH_PE_pcrel: value = field + raw; break;
    case DW_EH_PE_datarel:
      if (!datarel) return std::nullopt;
      value = *datarel + raw;
      break;
    default: return std::nullopt;
  }
  at += size;
  return value;
}

std::vector<FdeEntry> index_eh_frame(const MemoryReader& read, uint64_t eh_frame, size_t limit) {
  return Indexer(read, eh_frame, limit).run();
}

}  // namespace suture::consistency
