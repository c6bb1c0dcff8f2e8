// What the engine knows of a target process: its loaded objects in search order,
// each object's file parsed once (and its separate debug file, if the object is
// stripped), the symbol world built over them, and the records of patches
// already applied.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <chrono>

#include "consistency/stop-the-world.h"
#include "elf/elf-file.h"
#include "engine/ifunc-resolution.h"
#include "engine/patch-record.h"
#include "link/target-symbols.h"
#include "process/loaded-objects.h"
#include "process/tracee.h"

namespace suture::engine {

class TargetModel {
 public:
  // Reads the process's objects and records. IFUNCs are resolved as
  // engine/ifunc-resolution.h says (in the target, one thread is held for each
  // call, then released).
  explicit TargetModel(process::Tracee& tracee);
  TargetModel(const TargetModel&) = delete;
  TargetModel& operator=(const TargetModel&) = delete;

  const std::vector<process::LoadedObject>& objects() const { return objects_; }
  const elf::ElfFile& file(size_t index) const { return *files_[index]; }
  const link::TargetSymbols& symbols() const { return *symbols_; }
  std::vector<PatchRecord>& records() { return records_; }
  const std::vector<PatchRecord>& records() const { return records_; }
  const std::vector<std::string>& record_problems() const { return record_problems_; }

  // The object of the process with this build-id, if loaded.
  std::optional<size_t> find_by_build_id(const std::string& build_id) const;

  // The parts gcc split off function `name` of object `index` (NAME.cold,
  // NAME.cold.N), as runtime ranges: a thread there is still inside `name`.
  std::vector<RemoteRange> cold_parts(size_t index, const std::string& name, const std::string& file) const;

  // Why a safe point was not reached: every thread found inside busy code, with
  // its symbolized backtrace.
  std::string describe_refusal(const consistency::SafePointResult& result, std::chrono::milliseconds timeout) const;

  // "function+0x12 (object)" for messages.
  std::string symbolize(RemoteAddr address) const;

 private:
  process::Tracee& tracee_;
  std::vector<process::LoadedObject> objects_;
  std::vector<std::unique_ptr<elf::ElfFile>> files_;
  std::vector<std::unique_ptr<elf::ElfFile>> debug_files_;
  std::unique_ptr<IfuncResolution> ifuncs_;  // reads objects_
  std::unique_ptr<link::TargetSymbols> symbols_;
  std::vector<PatchRecord> records_;
  std::vector<std::string> record_problems_;
};

}  // namespace suture::engine
