// Registering a patch's unwind tables with the target's own unwinder, so that a
// C++ `throw` (or _Unwind_Backtrace, or pthread_cancel's forced unwind) can step
// through frames of patch code and of preserving thunks.
//
// Three verbs, in the order apply and revert use them:
//   plan        while linking: append the thunks' .eh_frame to their bytes, write
//               the list of tables into the linked data, fill record.unwind
//               (before the record is written);
//   register    after the region is mapped, while the target runs and before any
//               redirect exists: one remote call of the unwinder's
//               __register_frame_info_table;
//   deregister  at revert after the entries are restored (or as the undo of a
//               failed apply), before the region is unmapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/patch-record.h"
#include "engine/target-model.h"
#include "link/link-patch.h"
#include "patchfile/patch-file.h"
#include "process/tracee.h"

namespace suture::engine {

// Bytes the thunks' .eh_frame of `patch` adds to its thunks part (0 when no
// replacement needs a thunk), for sizing before addresses are known.
uint64_t thunk_unwind_table_size(const patchfile::Patch& patch);

// Appends the thunks' .eh_frame to `thunks` (the bytes of record.thunks, the
// thunks of record.redirects already in it), writes the list of tables into
// linked.unwind_block, and fills record.unwind. Leaves record.unwind empty when
// there is nothing to register or the process has no unwinder with a frame
// registry (a C program that never loaded libgcc_s: nothing in it unwinds).
void plan_unwind_registration(const TargetModel& model, size_t object, const patchfile::Patch& patch,
                              link::LinkedPatch& linked, std::vector<uint8_t>& thunks, PatchRecord& record);

// Registers the tables, from one held thread while the others run (the
// registry takes a lock that a held thread might own; if every thread is held,
// all are released first). Throws Error when the call fails or the unwinder did
// not take them.
void register_unwind_tables(process::Tracee& tracee, const UnwindRecord& unwind);

// Takes the tables back from the unwinder, if they were ever registered (the
// bookkeeping block is still zero otherwise, e.g. after a killed apply). Holds
// one thread for the call, releasing the others first if all are held. Throws
// Error when the unwinder does not give back the registration: the region must
// then stay mapped, since the unwinder may still read it.
void deregister_unwind_tables(process::Tracee& tracee, const TargetModel& model, const UnwindRecord& unwind);

}  // namespace suture::engine
