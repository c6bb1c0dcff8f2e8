// A deterministic mutation fuzzer for parse(), run as a unit test.
//
// Blind byte damage almost always dies at the checksum, which would leave the
// JSON and ELF layers untested. So most mutations here work on one layer and
// then re-seal the envelope (correct lengths and checksum): raw bytes of the
// metadata, JSON values swapped for other types and hostile strings, bytes of the
// object (biased towards the ELF header and the tables parse() checks), and
// whole ELF header fields set to boundary values. The test requires that every
// input either parses or throws suture::Error, and that every layer was reached.
#include <elf.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "common/error.h"
#include "elf/elf-file.h"
#include "patchfile/patch-file.h"
#include "sample-patch.h"

namespace suture::patchfile {
namespace {

using testing::envelope;
using testing::metadata_of;
using testing::sample_patch;

class Mutator {
 public:
  Mutator() : patch_(sample_patch()), file_(serialize(patch_)), metadata_(metadata_of(file_)) {
    auto object = elf::ElfFile::parse(patch_.object, "sample");
    Elf64_Ehdr header;
    std::memcpy(&header, patch_.object.data(), sizeof header);
    hot_.emplace_back(0, sizeof header);
    hot_.emplace_back(header.e_shoff, header.e_shnum * sizeof(Elf64_Shdr));
    for (const elf::Section& section : object.sections()) {
      if (section.type == SHT_SYMTAB || section.type == SHT_RELA || section.type == SHT_STRTAB) {
        hot_.emplace_back(section.offset, section.size);
      }
      section_headers_.push_back(header.e_shoff + section.index * sizeof(Elf64_Shdr));
    }
    for (const elf::Symbol& symbol : object.symbols()) {
      if (!symbol.name.empty()) names_.push_back(symbol.name);
    }
  }

  // One mutated file; `kind` names the strategy for the statistics.
  std::vector<uint8_t> next(std::string& kind) {
    switch (random_() % 8) {
      case 0:
        kind = "raw bytes";
        return damage_bytes(file_, 0, file_.size());
      case 1:
        kind = "truncation";
        return {file_.begin(), file_.begin() + static_cast<long>(random_() % file_.size())};
      case 2: {
        kind = "header field";
        auto bytes = file_;
        size_t at = 8 + 4 * (random_() % 6);  // version, lengths, checksum halves
        put(bytes, at, boundary(), 4);
        return bytes;
      }
      case 3: {
        kind = "metadata bytes";
        auto damaged = damage_bytes({metadata_.begin(), metadata_.end()}, 0, metadata_.size());
        return envelope({reinterpret_cast<const char*>(damaged.data()), damaged.size()}, patch_.object);
      }
      case 4:
        kind = "json values";
        return envelope(damage_json(), patch_.object);
      case 5:
        kind = "object bytes";
        return envelope(metadata_, damage_object_bytes());
      case 6:
        kind = "elf fields";
        return envelope(metadata_, damage_elf_fields());
      default: {
        kind = "everything";
        auto object = random_() % 2 ? damage_elf_fields() : damage_object_bytes();
        return envelope(random_() % 2 ? damage_json() : metadata_, object);
      }
    }
  }

 private:
  uint64_t boundary() {
    static const uint64_t values[] = {0,          1,          2,          7,           8,          0x7f,
                                      0xff,       0x100,      0xffff,     0xff00,      0xfff1,     0xfff2,
                                      0x7fffffff, 0x80000000, 0xffffffff, 1ull << 32,  1ull << 63, ~0ull,
                                      ~0ull - 7,  16u << 20,  256u << 20, file_.size()};
    if (random_() % 4 == 0) return random_();
    return values[random_() % std::size(values)];
  }

  static void put(std::vector<uint8_t>& bytes, size_t at, uint64_t value, size_t width) {
    for (size_t i = 0; i < width && at + i < bytes.size(); ++i) {
      bytes[at + i] = static_cast<uint8_t>(value >> (8 * i));
    }
  }

  // Bit flips, byte sets, insertions, deletions within [start, start + length).
  std::vector<uint8_t> damage_bytes(std::vector<uint8_t> bytes, size_t start, size_t length) {
    int changes = 1 + static_cast<int>(random_() % 4);
    for (int c = 0; c < changes && length > 0 && !bytes.empty(); ++c) {
      size_t at = std::min(start + random_() % length, bytes.size() - 1);
      switch (random_() % 5) {
        case 0:
          bytes[at] ^= static_cast<uint8_t>(1u << (random_() % 8));
          break;
        case 1:
          bytes[at] = static_cast<uint8_t>(random_());
          break;
        case 2:
          bytes.insert(bytes.begin() + static_cast<long>(at), 1 + random_() % 16,
                       static_cast<uint8_t>(random_()));
          break;
        case 3:
          bytes.erase(bytes.begin() + static_cast<long>(at),
                      bytes.begin() + static_cast<long>(std::min(bytes.size(), at + 1 + random_() % 16)));
          break;
        default:
          put(bytes, at, boundary(), size_t{1} << (random_() % 4));
      }
    }
    return bytes;
  }

  nlohmann::json odd_value() {
    switch (random_() % 12) {
      case 0:
        return nullptr;
      case 1:
        return random_() % 2 == 0;
      case 2:
        return -static_cast<int64_t>(random_() % 1000);
      case 3:
        return 0.5;
      case 4:
        return boundary();
      case 5:
        return nlohmann::json::array();
      case 6:
        return nlohmann::json::object();
      case 7:
        return "";
      case 8:
        return names_[random_() % names_.size()];
      case 9:
        return "0123456789abcdef";
      case 10:
        return std::string(1 + random_() % 40, "0123456789abcdefg"[random_() % 17]);
      default:
        return nlohmann::json::array({1, "x", nullptr});
    }
  }

  // Every leaf and container, by JSON pointer, so any of them can be replaced.
  static void collect(const nlohmann::json& value, const nlohmann::json::json_pointer& at,
                      std::vector<nlohmann::json::json_pointer>& out) {
    out.push_back(at);
    if (value.is_object()) {
      for (auto& [key, item] : value.items()) collect(item, at / key, out);
    } else if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) collect(value[i], at / i, out);
    }
  }

  std::string damage_json() {
    auto metadata = nlohmann::json::parse(metadata_);
    int changes = 1 + static_cast<int>(random_() % 3);
    for (int c = 0; c < changes; ++c) {
      std::vector<nlohmann::json::json_pointer> places;
      collect(metadata, nlohmann::json::json_pointer(), places);
      auto at = places[random_() % places.size()];
      if (at.empty()) continue;
      switch (random_() % 4) {
        case 0: {  // remove a key or an element
          auto parent = at.parent_pointer();
          auto& container = metadata[parent];
          if (container.is_object()) {
            container.erase(at.back());
          } else if (container.is_array() && !container.empty()) {
            container.erase(container.begin());
          }
          break;
        }
        case 1: {  // duplicate an element of an array
          auto& container = metadata[at.parent_pointer()];
          if (container.is_array()) container.push_back(metadata[at]);
          break;
        }
        default:
          metadata[at] = odd_value();
      }
    }
    return metadata.dump();
  }

  std::vector<uint8_t> damage_object_bytes() {
    auto [start, length] = hot_[random_() % hot_.size()];
    if (random_() % 4 == 0) return damage_bytes(patch_.object, 0, patch_.object.size());
    return damage_bytes(patch_.object, start, std::max<size_t>(length, 1));
  }

  // A whole field of the ELF header, a section header, a symbol or a relocation.
  std::vector<uint8_t> damage_elf_fields() {
    auto bytes = patch_.object;
    int changes = 1 + static_cast<int>(random_() % 2);
    for (int c = 0; c < changes; ++c) {
      size_t base;
      size_t width;
      size_t field;
      switch (random_() % 3) {
        case 0: {  // ELF header: fields from e_type on
          static const std::pair<size_t, size_t> fields[] = {{16, 2}, {18, 2}, {20, 4}, {24, 8}, {32, 8},
                                                             {40, 8}, {48, 4}, {52, 2}, {54, 2}, {56, 2},
                                                             {58, 2}, {60, 2}, {62, 2}};
          std::tie(field, width) = fields[random_() % std::size(fields)];
          base = 0;
          break;
        }
        case 1: {  // section header: name, type, flags, addr, offset, size, link, info, align, entsize
          static const std::pair<size_t, size_t> fields[] = {{0, 4},  {4, 4},  {8, 8},  {16, 8}, {24, 8},
                                                             {32, 8}, {40, 4}, {44, 4}, {48, 8}, {56, 8}};
          std::tie(field, width) = fields[random_() % std::size(fields)];
          base = section_headers_[random_() % section_headers_.size()];
          break;
        }
        default: {  // an entry of a symbol or relocation table, 8 bytes at a time
          auto [start, length] = hot_[1 + random_() % (hot_.size() - 1)];
          base = start + (length >= 8 ? (random_() % (length / 8)) * 8 : 0);
          field = 0;
          width = size_t{4} << (random_() % 2);
        }
      }
      put(bytes, base + field, boundary(), width);
    }
    return bytes;
  }

  std::mt19937_64 random_{20240611};
  Patch patch_;
  std::vector<uint8_t> file_;
  std::string metadata_;
  std::vector<std::pair<size_t, size_t>> hot_;  // [offset, size) in the object
  std::vector<size_t> section_headers_;
  std::vector<std::string> names_;
};

// Which layer turned an input down, from the message.
std::string layer_of(const std::string& message) {
  if (message.find(": object: ") != std::string::npos) return "object (ELF)";
  if (message.find("replacements[") != std::string::npos && message.find("metadata") == std::string::npos) {
    return "cross-references";
  }
  if (message.find("bindings[") != std::string::npos && message.find("metadata") == std::string::npos) {
    return "cross-references";
  }
  if (message.find("not valid JSON") != std::string::npos) return "json syntax";
  if (message.find("metadata") != std::string::npos) return "metadata fields";
  if (message.find("checksum") != std::string::npos) return "checksum";
  return "header";
}

TEST(PatchFileMutation, TwentyThousandMutationsOnlyEverThrowError) {
  Mutator mutator;
  std::map<std::string, int> outcomes;
  auto start = std::chrono::steady_clock::now();
  constexpr int rounds = 20000;
  for (int round = 0; round < rounds; ++round) {
    std::string kind;
    auto bytes = mutator.next(kind);
    try {
      Patch patch = parse(bytes, "mutant.sut");
      ++outcomes["accepted"];
      // Whatever is accepted must be sound enough to write back out.
      ASSERT_EQ(parse(serialize(patch), "again.sut").object, patch.object);
    } catch (const Error& error) {
      ++outcomes[layer_of(error.what())];
    } catch (const std::exception& error) {
      FAIL() << "round " << round << " (" << kind << "): escaped as a non-suture exception: " << error.what();
    } catch (...) {
      FAIL() << "round " << round << " (" << kind << "): escaped as something that is not an exception";
    }
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& [outcome, count] : outcomes) std::printf("%-18s %6d\n", outcome.c_str(), count);
  std::printf("%d mutations in %.2f s\n", rounds, seconds);

  // Each layer must have been exercised, or the fuzzing proves little.
  for (const char* layer : {"header", "checksum", "json syntax", "metadata fields", "object (ELF)",
                            "cross-references", "accepted"}) {
    EXPECT_GE(outcomes[layer], 50) << layer;
  }
}

}  // namespace
}  // namespace suture::patchfile
