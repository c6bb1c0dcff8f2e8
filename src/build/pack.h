// pack: turn a hand-written patch object into a patch file for one binary.
//
// Reads the SUTURE_REPLACE / SUTURE_BIND records the author's macros left in the
// object, resolves every old function against the binary (by name, by
// "file.c:name" for statics, by C++ qualified name or signature, or by mangled
// name), checks each can take a jump, checks that every undefined symbol of the
// object can be resolved in the binary or the libraries it needs, and writes a
// patch keyed by the binary's build-id.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "patchfile/patch-file.h"

namespace suture::build {

struct PackOptions {
  std::string target;                     // the executable or shared library to patch
  std::string object;                     // the patch object (cc -c)
  std::string name;                       // label; defaults to the object's file stem
  std::vector<std::string> library_path;  // where to look for the target's DT_NEEDED libraries
  bool allow_undefined = false;           // leave unresolvable symbols to apply time
};

struct PackResult {
  patchfile::Patch patch;
  std::vector<std::string> notes;  // e.g. "needed library libfoo.so not found; symbols checked at apply"
  // Replaced functions (by the spelling they were asked for) whose old code's
  // register use could not be read completely, with the first reason: pack
  // then takes it to write every caller-saved register and preserves nothing,
  // so callers that relied on less are not covered by a thunk.
  std::map<std::string, std::string> unknown_contracts;
};

// Throws Error("OBJECT: ..." or "TARGET: ...") naming what is wrong.
PackResult pack(const PackOptions& options);

// A function to replace, as an author would name it ("name", "file.c:name",
// "ns::f(int)"), and the patch object's function that replaces it.
struct ReplaceRequest {
  std::string spelling;
  std::string new_symbol;
};
// An undefined symbol of the patch object to bind to a target symbol ("file.c:name").
struct BindRequest {
  std::string local;
  std::string target;
};

// pack() for requests that come from elsewhere than the object's .suture.*
// records (suture build); options.object names the object in messages only.
PackResult pack_requests(const PackOptions& options, std::vector<uint8_t> object_bytes,
                         const std::vector<ReplaceRequest>& replace, const std::vector<BindRequest>& bind);

}  // namespace suture::build
