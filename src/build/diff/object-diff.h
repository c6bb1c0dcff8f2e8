// The object differ: given the same translation unit compiled before and after a
// source change (relocatable objects built with -ffunction-sections
// -fdata-sections), say which functions changed, which functions and data are
// new, and which changes to existing data cannot be patched live.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "elf/elf-file.h"

namespace suture::build::diff {

struct Change {
  enum Kind { changed_function, new_function, new_data, changed_data, removed_function };
  Kind kind;
  std::string symbol;   // as named in the patched object (the original's for removed_function)
  std::string section;  // the section that holds it, in that same object
  // Why, for a person: "bytes differ at +0x12", "relocation 3 (at +0x1c) now refers
  // to bar instead of baz", "string literal changed from "a" to "b"", "cold part
  // foo.cold changed: ...", "new function".
  std::string reason;
  // For changed_function and changed_data: its name in the original object, which
  // is the running program's name for it. gcc numbers statics and clones in the
  // order it meets them, so `counter.1` here may be `counter.0` there.
  std::string original;
};

struct ObjectDiff {
  std::vector<Change> changes;
  // Refusals, each naming the variable first after the object and section
  // ("new.o: .data.limit: limit: initial value changed ..."): a changed initial
  // value or size of existing data, data that changed between writable and
  // read-only, or a static variable that cannot be told apart from its namesakes.
  // Every such change is also listed in `changes` as changed_data.
  std::vector<std::string> errors;
  // Functions whose code differs only in line numbers (`__LINE__` as the line
  // argument of __assert_fail or of a call that also takes `__FILE__`, or inside
  // a "file.c:123" string): not changes, listed for the summary with the reason
  // ("only line numbers changed: ..."). The running program keeps its code.
  std::vector<Change> forgiven;
  // Every function and variable found in both objects: patched name -> original
  // name. A patch refers to what it does not bring by the original's name, the
  // one the running program's symbol table has.
  std::map<std::string, std::string> original_name;
  // The original object's functions and what their code refers to (calls, tail
  // jumps, addresses taken): function -> the functions of the object it names,
  // all by the original's names; a cold part's references count as its
  // parent's. Register allocation around calls (register-allocation.h) follows it.
  std::map<std::string, std::set<std::string>> references;
  // The same for the patched object, by the patched object's names.
  std::map<std::string, std::set<std::string>> patched_references;
};

// Compares `original` with `patched`, function by function and variable by
// variable. Changes come in the patched object's symbol order, removed functions last.
ObjectDiff diff_objects(const elf::ElfFile& original, const elf::ElfFile& patched);

// For messages: "changed function", "new data", ...
const char* kind_name(Change::Kind kind);

}  // namespace suture::build::diff
