// real-compiler: which compiler (and launcher) the wrapper stands in for.
//
// The wrapper is reached in one of two ways, and each names the real compiler
// differently:
//  - directly, as `suture-cc` (CC="suture-cc gcc", or CC=suture-cc with
//    SUTURE_REAL_CC=gcc; `suture-c++` reads SUTURE_REAL_CXX): the real compiler
//    is the first argument when that names a program, else the variable;
//  - through a symbolic link named like the compiler (cc, gcc, g++, clang,
//    x86_64-linux-gnu-gcc-12...) in a directory put first on PATH: the real
//    compiler is the next program of that name on PATH after the wrapper's own
//    directory. A Makefile that names its compiler by absolute path
//    (CC=/usr/bin/gcc) never looks at PATH: only the CC=/CXX= route catches it.
// Either way a candidate that is the wrapper itself is skipped, so it never runs
// itself in a loop.
//
// Launchers (ccache, sccache, distcc) sit in front of the compiler: `ccache gcc`.
// The wrapper has to be in front of the launcher, not behind it: behind ccache
// it would see ccache's temporary output names, and on a cache hit nothing at
// all. So a launcher is kept as a prefix of the command it runs, the compiler
// after it is resolved like any other, and the flags and the record are the
// wrapper's as usual (the flags are then part of ccache's key). That covers
// `CC="suture-cc ccache gcc"`, a `ccache` link in the wrapper's directory for
// Makefiles that say `CC = ccache gcc`, and a compiler found on PATH that is
// ccache's masquerading link (/usr/lib/ccache/gcc).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace suture::build::wrapper {

// What the wrapper needs from its process environment, gathered once by the driver.
struct Environment {
  std::string path;       // $PATH
  std::string cwd;
  std::string own_exe;    // /proc/self/exe
  std::string real_cc;    // $SUTURE_REAL_CC
  std::string real_cxx;   // $SUTURE_REAL_CXX
  bool nested = false;    // $SUTURE_CC_ACTIVE: a wrapper is already running above us
};

struct Invocation {
  std::vector<std::string> launcher;  // e.g. {"/usr/bin/ccache"}; empty if none
  std::string compiler;               // absolute path of the real compiler
  std::vector<std::string> args;      // the compiler's arguments as the project gave them
  bool pass_through = false;          // run as given, nothing to add or record (`ccache -s`)

  // launcher + compiler + ARGS, ready for execv.
  std::vector<std::string> command(const std::vector<std::string>& with_args) const;
};

// ARGV is the wrapper's own argv. Throws Error naming what it could not find.
Invocation resolve_invocation(const std::vector<std::string>& argv, const Environment& env);

// Whether the wrapper was called by its own name (suture-cc, suture-c++)
// rather than through a link named like a compiler.
bool called_directly(const std::string& argv0);

bool is_launcher(const std::string& name);

// The first executable NAME in the PATH entries from FIRST on, skipping any
// that is the wrapper itself. NAME with a slash is taken as a path.
std::optional<std::string> find_program(const std::string& name, const Environment& env, size_t first = 0);

}  // namespace suture::build::wrapper
