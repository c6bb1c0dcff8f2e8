// libFuzzer entry point for the patch-file parser, the surface that reads files
// from elsewhere. parse() may accept or throw suture::Error; anything else (a
// crash, a sanitizer report, another exception) is a bug.
//
// The first input byte picks a mode. Odd: the rest is a patch file whose
// checksum is recomputed before parsing, so the fuzzer gets past the checksum
// into the JSON and ELF layers (lengths are left alone: they are fuzzed too).
// Even: the rest is parsed exactly as given, checksum and all.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "common/error.h"
#include "patchfile/patch-file.h"

namespace {

void reseal(std::vector<uint8_t>& file) {
  constexpr size_t header_size = 32;
  if (file.size() < header_size) return;
  uint64_t hash = 0xcbf29ce484222325ull;  // FNV-1a 64, as in the layout comment
  for (size_t i = header_size; i < file.size(); ++i) {
    hash ^= file[i];
    hash *= 0x100000001b3ull;
  }
  for (int i = 0; i < 8; ++i) file[24 + i] = static_cast<uint8_t>(hash >> (8 * i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> file(data + 1, data + size);
  if (data[0] & 1) reseal(file);
  try {
    auto patch = suture::patchfile::parse(file, "fuzz.sut");
    // What parse() accepts, serialize() must write and parse() take back.
    auto again = suture::patchfile::parse(suture::patchfile::serialize(patch), "again.sut");
    if (again.object != patch.object || again.replacements.size() != patch.replacements.size()) abort();
  } catch (const suture::Error&) {
  }
  return 0;
}
