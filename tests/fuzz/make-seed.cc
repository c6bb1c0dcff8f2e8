// Writes the fuzzers' seed patch file around a fixture object: the mode byte
// that asks for resealing, then a valid patch.
#include <cstdio>
#include <fstream>
#include <iterator>

#include "patchfile/patch-file.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s OBJECT OUTPUT\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  suture::patchfile::Patch patch;
  patch.object.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  patch.name = "seed";
  patch.target_build_id = "0123456789abcdef0123456789abcdef01234567";
  patch.target_name = "server";
  patch.created_unix = 1700000000;
  patch.replacements.push_back({"compute", "compute", "", 0x1139, 42, "patched_function"});
  patch.replacements.push_back({"util.c:bump", "bump", "util.c", 0x1200, 15, "patched_function"});
  patch.bindings.push_back({"helper_target", "helper", "util.c"});
  suture::patchfile::assign_id(patch);
  suture::patchfile::parse(suture::patchfile::serialize(patch), "seed");  // must be valid
  auto bytes = suture::patchfile::serialize(patch);
  std::ofstream out(argv[2], std::ios::binary);
  out.put(1);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return out ? 0 : 1;
}
