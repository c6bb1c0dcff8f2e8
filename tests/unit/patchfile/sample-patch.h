// Shared by the patch-file tests: a valid patch around the fixture object, and
// a way to wrap arbitrary metadata and object bytes in a well-formed envelope
// (right lengths, right checksum) so that the inner layers of parse() get tested.
#pragma once

#include <cstdint>
#include <fstream>
#include <string_view>
#include <vector>

#include "patchfile/patch-file.h"

namespace suture::patchfile::testing {

inline std::vector<uint8_t> fixture_object() {
  std::ifstream in(PATCH_OBJECT, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline Patch sample_patch() {
  Patch patch;
  patch.name = "fix-compute";
  patch.target_build_id = "0123456789abcdef0123456789abcdef01234567";
  patch.target_name = "server";
  patch.created_unix = 1700000000;
  patch.replacements.push_back({"compute", "compute", "", 0x1139, 42, "patched_function"});
  patch.replacements.push_back({"util.c:bump", "bump", "util.c", 0x1200, 15, "patched_function"});
  patch.bindings.push_back({"helper_target", "helper", "util.c"});
  patch.object = fixture_object();
  assign_id(patch);
  return patch;
}

// The header as patch-file.h specifies it, written independently of the code
// under test: a second reading of the layout comment.
inline std::vector<uint8_t> envelope(std::string_view metadata, const std::vector<uint8_t>& object,
                                     uint32_t version = 1) {
  std::vector<uint8_t> out = {'S', 'U', 'T', 'U', 'R', 'E', 'P', 'T'};
  auto put = [&out](uint64_t value, int width) {
    for (int i = 0; i < width; ++i) out.push_back(static_cast<uint8_t>(value >> (8 * i)));
  };
  put(version, 4);
  put(metadata.size(), 4);
  put(object.size(), 8);
  uint64_t hash = 0xcbf29ce484222325ull;
  auto mix = [&hash](uint8_t byte) {
    hash ^= byte;
    hash *= 0x100000001b3ull;
  };
  for (char c : metadata) mix(static_cast<uint8_t>(c));
  for (uint8_t b : object) mix(b);
  put(hash, 8);
  out.insert(out.end(), metadata.begin(), metadata.end());
  out.insert(out.end(), object.begin(), object.end());
  return out;
}

// The metadata part of a serialized patch.
inline std::string metadata_of(const std::vector<uint8_t>& file) {
  uint32_t length = 0;
  for (int i = 0; i < 4; ++i) length |= uint32_t{file[12 + i]} << (8 * i);
  return {reinterpret_cast<const char*>(file.data()) + 32, length};
}

}  // namespace suture::patchfile::testing
