// extract: the step of `suture build` that cuts the patch out of the patched
// translation unit. Given the patched relocatable object (built with
// -ffunction-sections -fdata-sections) and what the differ found, it writes a new
// relocatable object holding only the changed and new functions, the new data,
// and the anonymous constants they use; everything else they refer to becomes an
// undefined symbol that the running program supplies, so existing state is used,
// never duplicated.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "build/diff/object-diff.h"
#include "elf/elf-file.h"
#include "patchfile/patch-file.h"

namespace suture::build::extract {

struct Extracted {
  std::vector<uint8_t> object;  // ET_REL, EM_X86_64
  // One per changed function: symbol, file (the source file for statics) and
  // new_symbol; spelling is "file:name" for statics; target_value/size are left
  // for pack to fill from the target binary.
  std::vector<patchfile::Replacement> replacements;
  // One per static of this object that the new code uses but does not bring:
  // the object's undefined alias bound to the running program's own copy.
  std::vector<patchfile::Binding> bindings;
  // For a person, one line per section copied: "SECTION: why".
  std::vector<std::string> included;
};

// Throws Error("OBJECT: SECTION: SYMBOL: what is wrong") when the object cannot be
// cut apart (a function's section also holds another function, a change names a
// symbol the object does not define) and when the differ refused the change.
//
// `source_file` is the STT_FILE name of the translation unit as the running
// program's symbol table has it: it qualifies replacements of static functions
// and bindings to static data.
Extracted extract_patch(const elf::ElfFile& patched, const diff::ObjectDiff& diff, std::string_view source_file);

}  // namespace suture::build::extract
