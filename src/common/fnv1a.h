// FNV-1a, 64 bits: the checksum of patch files and in-target records, and the
// short keys of caches and directories. Not a cryptographic hash.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace suture {

class Fnv1a {
 public:
  Fnv1a& add(std::span<const uint8_t> bytes) {
    for (uint8_t byte : bytes) {
      hash_ ^= byte;
      hash_ *= 0x100000001b3ull;
    }
    return *this;
  }
  Fnv1a& add_text(std::string_view text) {
    return add({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  }
  Fnv1a& add_u64(uint64_t value) {
    uint8_t bytes[8];
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(value >> (8 * i));
    return add(bytes);
  }
  // Length first, so that ("ab", "c") and ("a", "bc") hash differently.
  Fnv1a& add_string(std::string_view text) {
    add_u64(text.size());
    return add_text(text);
  }
  uint64_t value() const { return hash_; }

 private:
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

inline uint64_t fnv1a(std::span<const uint8_t> bytes) { return Fnv1a().add(bytes).value(); }
inline uint64_t fnv1a(std::string_view text) { return Fnv1a().add_text(text).value(); }

}  // namespace suture
