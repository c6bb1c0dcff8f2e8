// dependency-file: which headers a translation unit read, from the make rule
// the compiler writes with -MD.
//
// `suture build` must know, for every object of the original build, the files
// that went into it: a diff that touches a header has to be followed into every
// translation unit that includes it, and projects without dependency tracking
// (plain Makefiles with no -MD) will not recompile those units themselves. The
// compiler already knows the answer while it compiles, so the wrapper asks it:
// `-MD -MF SIDE` writes the rule as a side effect of the same compile and
// changes nothing in the object (rejected: a second `-M` pass per compile, which
// costs another preprocessing run; scanning #include lines ourselves, which
// misses macros, include paths and conditionals). A compile that already asks
// for a dependency file (-MD/-MMD) keeps its own: the wrapper reads that file
// rather than adding a second -MF, which would take the project's place.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "build/wrapper/command-line.h"

namespace suture::build::wrapper {

// The prerequisites of every rule in TEXT (make syntax as gcc and clang write
// it: backslash-newline continuations, `\ ` and `\#` escapes, `$$` for `$`,
// phony `header.h:` rules from -MP), in order, each once. Throws Error when a
// rule has no colon.
std::vector<std::string> parse_dependency_rules(std::string_view text);

// Where the driver writes the dependency file of a compile of LINE that already
// asks for one (-MD/-MMD) and produces OBJECT: the -MF argument, else OBJECT
// with .d for its suffix when -o is given, else the source's stem with .d in
// the current directory. Relative results are relative to the compile's cwd.
// nullopt when LINE asks for none.
std::optional<std::string> own_dependency_file(const CommandLine& line, const std::string& source_path);

// What a compile read, made absolute against CWD: the prerequisites of the rule
// in FILE without the source itself. nullopt when FILE cannot be read or parsed
// (the build log then says "unknown", and suture build assumes the worst).
std::optional<std::vector<std::string>> headers_from_file(const std::string& file, const std::string& source,
                                                          const std::string& cwd);

}  // namespace suture::build::wrapper
