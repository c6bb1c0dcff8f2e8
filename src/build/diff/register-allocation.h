// Callers that differ only by interprocedural register allocation: which
// changed functions of a translation unit the running program can keep,
// because their code differs only in the registers gcc's -fipa-ra let them
// keep live across calls to changed callees. See register-allocation.cc.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "build/diff/object-diff.h"

namespace suture::build::diff {

struct KeptCaller {
  Change change;  // what the -fipa-ra comparison reported for it
  // The replaced functions whose register use it relied on, by the original's
  // names: those it calls, directly or through functions the running program
  // keeps, with no replaced function in between.
  std::vector<std::string> callees;
};

// `with_ipa_ra` compares the unit as the project compiled it; `without_ipa_ra`
// the same two sources compiled with -fno-ipa-ra added. A changed function
// is kept when (1) it is the same function in both comparisons and has no
// difference at all in the -fno-ipa-ra one, (2) the running program's copy
// reaches at least one function that stays replaced, and (3) nothing the patch
// brings reaches it (the patch's code was compiled against the new copy's
// register use). Functions named in `must_replace` (original names) are never
// kept. Kept functions leave `with_ipa_ra.changes`.
std::vector<KeptCaller> keep_register_allocation_only(ObjectDiff& with_ipa_ra, const ObjectDiff& without_ipa_ra,
                                                      const std::set<std::string>& must_replace = {});

// Whether some changed function of `diff` reaches another one: only then can a
// caller differ by register allocation around a changed callee, and only then
// is the -fno-ipa-ra comparison worth compiling.
bool calls_changed_functions(const ObjectDiff& diff);

}  // namespace suture::build::diff
