// split-compile: one command that compiles and links (`cc a.c b.c -o prog`), run
// as one compile per source into an object we keep, then the link of those.
//
// The driver would compile such sources into temporary objects and delete them
// after the link, so nothing would be left to compare. Small Makefiles do this
// all the time (make's built-in `%: %.c` rule), and so do configure probes.
// Rejected alternatives: refusing (breaks every such build and every autotools
// probe); -save-temps (also leaves .i/.s files and preprocesses separately);
// compiling each source a second time beside the original command (the link
// would then use objects other than the ones recorded). Splitting keeps what the
// binary is made of identical to what the log says.
//
// Each compile keeps every option of the original command but the operands, -o,
// -l and -x (the source gets its own -x when it had one), and adds -c, the
// wrapper's flags and -o OBJECT. If the command asked for a dependency file
// (-MD/-MMD) without naming it, the compile names it the way gcc 12 would have
// for the combined command, so the project's dependency tracking still works.
// The link is the original command with each source replaced by its object.
#pragma once

#include <string>
#include <vector>

#include "build/wrapper/command-line.h"

namespace suture::build::wrapper {

struct SplitCompile {
  std::vector<std::string> args;  // the compiler's arguments
  std::string object;             // absolute
  size_t source = 0;              // index into CommandLine::sources
  std::string dependency_file;    // the project's own, as the compile writes it; "" when it asked for none
};

struct SplitPlan {
  std::vector<SplitCompile> compiles;
  std::vector<std::string> link_args;
};

// ARGS are the expanded arguments LINE was parsed from (Step::compile_and_link).
// Objects go to OBJECT_DIR/OUTPUT-HASH/N-STEM.o: one directory per link output,
// named after the output's absolute path, so the same command always writes the
// same objects.
SplitPlan plan_split(const std::vector<std::string>& args, const CommandLine& line, const std::string& object_dir,
                     const std::string& cwd);

}  // namespace suture::build::wrapper
