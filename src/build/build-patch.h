// suture build: from the source tree a running program was built from and a
// fix as a diff, the patch files `suture apply` takes — one per changed object.
#pragma once

#include <string>
#include <vector>

namespace suture::build {

struct BuildOptions {
  std::string source;                 // the tree the running program was built from
  std::vector<std::string> diffs;     // applied in order with patch -p1
  std::string output;                 // directory for the .sut files
  std::string build = "make -j2";     // the project's build command, run in the tree
  std::string clean = "make clean";   // run in the fresh copy before the original build ("" for none)
  std::string against;                // the binary to patch (default: the same path in `source`)
  std::string cache;                  // default $SUTURE_CACHE_DIR, $XDG_CACHE_HOME/suture, ~/.cache/suture
  std::string wrapper;                // suture-cc (default: next to this program, then PATH)
  bool verbose = false;
};

struct BuiltPatch {
  std::string path;                    // the .sut written
  std::string binary;                  // the object it patches
  std::vector<std::string> changed;    // functions replaced
  std::vector<std::string> added;      // new functions and data
  std::vector<std::string> reasons;    // why each section is in the patch
  std::vector<std::string> notes;      // from pack
};

struct BuildReport {
  std::vector<BuiltPatch> patches;
  std::vector<std::string> outside_build;  // files the diff touches that no compile used
  bool original_cached = false;            // the original build was reused
  std::vector<std::string> recompiled;     // translation units the patched build compiled
  std::vector<std::string> replayed;       // ...that it left stale and suture compiled again
  std::vector<std::string> build_files;    // build descriptions the diff touches (Makefile...)
  std::vector<std::string> forgiven;       // "FILE: FUNCTION: why it is not a change" (line numbers)
};

// Throws Error naming what went wrong (a failed build, a touched source no
// compile uses, a replayed compile that failed, a refused change, a fidelity
// mismatch).
BuildReport build_patches(const BuildOptions& options);

}  // namespace suture::build
