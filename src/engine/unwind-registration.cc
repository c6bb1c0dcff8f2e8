// Making the target's unwinder find the FDEs of patch code.
//
// The problem. A throw unwinds with libgcc: _Unwind_Find_FDE looks first in its
// registry of frames handed to __register_frame_info* (libgcc_s, or a copy of
// libgcc_eh linked into the program), then asks glibc's _dl_find_object for the
// loaded object that holds the PC and reads that object's .eh_frame_hdr. A patch
// region is no loaded object, so without help every frame of patch code (and of
// a preserving thunk) ends the search: _Unwind_RaiseException returns and the
// C++ runtime calls std::terminate.
//
// The approach. Register the tables with the registry of the unwinder that the
// patched object's scope binds (the dynamic linker's order, so the copy that
// throws in that object is the one that learns of them). One call of
// __register_frame_info_table(list, object) covers the patch's own .eh_frame and
// the thunks' one: `list` is a null-terminated array of .eh_frame starts and
// `object` libgcc's bookkeeping, both in a zeroed block the linker leaves in the
// patch's data part. That function only links `object` into a list under the
// registry's mutex: it allocates nothing (the FDEs are sorted lazily, by the next
// search). So it runs as a remote call on one held thread while all others run —
// a thread held while owning the mutex would otherwise deadlock the call (the
// call's timeout then gives up with nothing changed, as the lock was not taken).
// It happens after the region is mapped and before any redirect is written, so
// no frame of patch code can exist before its FDEs are known; on failure the
// undo deregisters. Revert deregisters after the entries are restored (no frame
// of the patch is left, none can appear) and before unmapping, since the
// registry reads the tables until then.
//
// Safety of deregistration. libgcc aborts the process when asked to deregister
// tables it does not know. So we never guess: registration sets the first word
// of `object` (pc_begin = -1 until the first search), and that block is zero
// until then; the record keeps the address of the very deregistration function
// of the unwinder used, and a revert that finds its library gone (never the case
// for libgcc_s, which is not unloaded) has nothing to deregister. The call's
// result must be `object`. Deregistering frees the sorted FDE array the registry
// built, so the held thread must not own a malloc arena lock: the thread
// hold_one() prefers is one blocked in a system call, which is the best we know.
//
// Rejected alternatives.
//  - __register_frame(eh_frame): allocates the bookkeeping with malloc inside
//    the target, from a thread we interrupted at an unknown point.
//  - Making the region look like a loaded object (a link_map entry with a
//    PT_GNU_EH_FRAME): _dl_find_object reads glibc-private tables that no
//    interface lets us extend.
//  - Registering with every copy of libgcc in the process: a copy the patched
//    object does not bind never unwinds its frames.
// Limits. A process with no registry loaded (a C program that has not loaded
// libgcc_s) gets nothing registered; if it later loads one (backtrace(),
// pthread_cancel), patch frames stay unknown to it. gcc 13's libgcc inserts into
// a b-tree with malloc on registration; Debian 12's gcc 12 does not.
#include "engine/unwind-registration.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "redirect/preserving-thunk.h"

namespace suture::engine {
namespace {

// The bookkeeping block: libgcc's struct object first (48 bytes in gcc 12; its
// layout is the unwinder's business, we only test that the first word became
// non-zero), the list of tables after it.
constexpr uint64_t kObjectSpace = 128;
constexpr uint64_t kMaxTables = 2;  // the patch's .eh_frame, the thunks' one
static_assert(kObjectSpace + (kMaxTables + 1) * 8 <= link::kUnwindBlockSize);
constexpr uint64_t kTableAlign = 8;

std::vector<redirect::ThunkFrame> thunk_frames(const patchfile::Patch& patch, const PatchRecord* record) {
  std::vector<redirect::ThunkFrame> frames;
  for (size_t i = 0; i < patch.replacements.size(); ++i) {
    const auto& r = patch.replacements[i];
    if (!r.preserve) continue;
    RemoteAddr at = record ? record->redirects.at(i).thunk.start : RemoteAddr();
    frames.push_back({at, r.preserve, r.stack_argument_bytes});
  }
  return frames;
}

// The registry's lock may be owned by any thread: a call into it runs on one
// held thread while all others run.
void hold_one_only(process::Tracee& tracee) {
  auto held = tracee.held_threads();
  if (held.size() > 1 || (held.size() == 1 && held.front().tid == tracee.helper())) tracee.release_all();
  if (tracee.held_threads().empty()) tracee.hold_one(process::Tracee::Work::calls);
}

void put64(std::vector<uint8_t>& bytes, uint64_t at, uint64_t value) {
  if (at + 8 > bytes.size()) fail("internal: unwind block outside the data part");
  std::memcpy(bytes.data() + at, &value, 8);
}

}  // namespace

uint64_t thunk_unwind_table_size(const patchfile::Patch& patch) {
  auto frames = thunk_frames(patch, nullptr);
  if (frames.empty()) return 0;
  return kTableAlign + redirect::thunk_unwind_table_size(frames);
}

void plan_unwind_registration(const TargetModel& model, size_t object, const patchfile::Patch& patch,
                              link::LinkedPatch& linked, std::vector<uint8_t>& thunks, PatchRecord& record) {
  record.unwind = {};
  std::vector<RemoteAddr> tables;
  if (!linked.eh_frame.empty()) tables.push_back(linked.eh_frame.start);
  auto frames = thunk_frames(patch, &record);
  if (!frames.empty()) {
    thunks.resize((thunks.size() + kTableAlign - 1) & ~(kTableAlign - 1), 0xcc);
    RemoteAddr at = record.thunks.start + static_cast<int64_t>(thunks.size());
    auto table = redirect::encode_thunk_unwind_table(at, frames);
    if (thunks.size() + table.size() > record.thunks.size)
      fail("internal: thunk unwind table exceeds thunk_unwind_table_size()");
    thunks.insert(thunks.end(), table.begin(), table.end());
    tables.push_back(at);
  }
  record.eh_frames = tables;  // for suture's own unwinder, registered or not
  if (tables.empty()) return;

  const auto registrar = model.symbols().find("__register_frame_info_table", object);
  const auto deregistrar = model.symbols().find("__deregister_frame_info", object);
  if (!registrar || !deregistrar) return;  // no frame registry in the process: nothing unwinds through its frames
  if (registrar->object != deregistrar->object)
    fail("{}: __register_frame_info_table ({}) and __deregister_frame_info ({}) come from different objects",
         model.objects()[object].path, registrar->description, deregistrar->description);

  const uint64_t block = static_cast<uint64_t>(linked.unwind_block.start - linked.placement.data);
  for (size_t i = 0; i <= tables.size(); ++i)
    put64(linked.data, block + kObjectSpace + 8 * i, i < tables.size() ? tables[i].value() : 0);
  record.unwind = {linked.unwind_block.start + static_cast<int64_t>(kObjectSpace), linked.unwind_block.start,
                   registrar->address, deregistrar->address};
}

void register_unwind_tables(process::Tracee& tracee, const UnwindRecord& unwind) {
  if (unwind.empty()) return;
  hold_one_only(tracee);
  tracee.call(unwind.register_function, {unwind.tables.value(), unwind.object.value()});
  if (tracee.memory().read_u64(unwind.object) == 0)
    fail("process {}: __register_frame_info_table at {} did not take the patch's unwind tables", tracee.pid(),
         unwind.register_function);
}

void deregister_unwind_tables(process::Tracee& tracee, const TargetModel& model, const UnwindRecord& unwind) {
  if (unwind.empty()) return;
  if (tracee.memory().read_u64(unwind.object) == 0) return;  // never registered
  const bool loaded = std::any_of(model.objects().begin(), model.objects().end(), [&](const auto& o) {
    return o.span.contains(unwind.deregister_function);
  });
  if (!loaded) return;  // the unwinder's library, and its registry, are gone
  hold_one_only(tracee);
  const uint64_t taken = tracee.call(unwind.deregister_function, {unwind.tables.value()});
  if (taken != unwind.object.value())
    fail("process {}: __deregister_frame_info at {} returned {:#x}, not the registration at {}", tracee.pid(),
         unwind.deregister_function, taken, unwind.object);
}

}  // namespace suture::engine
