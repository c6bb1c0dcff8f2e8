// The record of an applied patch, kept inside the target itself so that `status`
// and `revert` work from any later run of suture with nothing on disk.
//
// Every patch region is a memfd mapping named "suture:SEQ:ID", so /proc/PID/maps
// lists them by name ("/memfd:suture:3:0123456789abcdef (deleted)") and a forked
// child, which shares the patched code, shows the same records. The region's
// first part (read-only to the target) holds this record:
//   offset 0   magic    "SUTURE-RECORD-1\0"
//   offset 16  state    u32: 1 prepared (code mapped, entries not yet redirected)
//                            2 active
//   offset 20  reserved u32
//   offset 24  json_len u64
//   offset 32  checksum u64 FNV-1a 64 of the JSON
//   offset 64  JSON: identity, the object it patches, every redirected entry
//              with its original bytes, the region's parts and what the code
//              imports from the target.
// The state word is the only field rewritten after mapping: an apply that dies
// between mapping and activation leaves a "prepared" record that `status` shows
// and `revert` cleans up.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/remote-addr.h"
#include "consistency/unwind.h"
#include "process/memory.h"

namespace suture::engine {

inline constexpr std::string_view kMemfdPrefix = "suture:";
inline constexpr uint64_t kRecordHeaderSize = 64;

enum class RecordState : uint32_t { prepared = 1, active = 2 };

struct RedirectRecord {
  std::string name;              // the old function's symbol
  RemoteAddr function;           // its entry
  uint64_t function_size = 0;
  RemoteAddr site;               // where the jump is written
  std::vector<uint8_t> original; // the bytes the jump replaced
  std::vector<uint8_t> jump;     // the jump
  RemoteAddr destination;        // the new function
  uint64_t destination_size = 0;
  RemoteRange thunk;             // the register-preserving thunk the jump goes to, if any
};

// The patch's unwind tables as handed to the target's unwinder (see
// unwind-registration.h); all null when there was nothing to register or no
// unwinder to register with. Records written before this field existed read as
// null.
struct UnwindRecord {
  RemoteAddr tables;               // the null-terminated list of .eh_frame starts (in data)
  RemoteAddr object;               // the unwinder's bookkeeping (in data): zero until registered
  RemoteAddr register_function;    // __register_frame_info_table of the unwinder used
  RemoteAddr deregister_function;  // its __deregister_frame_info
  bool empty() const { return tables.is_null(); }
};

struct PatchRecord {
  uint64_t sequence = 0;       // order of application, 1 = first ever in this process
  std::string id;
  std::string name;
  std::string target_build_id;
  std::string object_path;
  uint64_t applied_unix = 0;
  RecordState state = RecordState::prepared;
  RemoteRange region;          // the whole mapping, record included
  RemoteRange text, rodata, data;
  RemoteRange thunks;          // r-x, after data; empty when no redirect needs a thunk
  std::vector<RedirectRecord> redirects;
  std::vector<RemoteAddr> imports;  // target addresses the patch's code refers to
  UnwindRecord unwind;
  // Where the .eh_frame lists of the patch's code and of its thunks start (each
  // ends with a zero length word), registered with the target's unwinder or
  // not: suture's own unwinder reads them to step through frames of the patch.
  // Empty in records of older versions, and for code without unwind tables.
  std::vector<RemoteAddr> eh_frames;

  RemoteAddr record_address() const { return region.start; }
  // Whether `address` is in code of this patch (its text or its thunks).
  bool runs(RemoteAddr address) const { return text.contains(address) || thunks.contains(address); }
};

// The patch's code and its thunks, each with the .eh_frame lists that describe
// them, for suture's own unwinder; appended to `out`.
void add_code_unwind_tables(const PatchRecord& record, std::vector<consistency::CodeUnwindTables>& out);
std::vector<consistency::CodeUnwindTables> code_unwind_tables(const std::vector<PatchRecord>& records);

// The record's bytes (header + JSON), not padded.
std::vector<uint8_t> encode_record(const PatchRecord& record);
// Decodes and checks; throws Error("ORIGIN: ...").
PatchRecord decode_record(std::span<const uint8_t> bytes, std::string_view origin);

// Every record found in the process, oldest first. Unreadable ones are reported
// through `problems` and skipped.
std::vector<PatchRecord> read_records(pid_t pid, const process::Memory& memory,
                                      std::vector<std::string>* problems = nullptr);

// Rewrites the state word of a record in the target.
void write_record_state(const process::Memory& memory, const PatchRecord& record, RecordState state);

std::string_view to_string(RecordState state);

}  // namespace suture::engine
