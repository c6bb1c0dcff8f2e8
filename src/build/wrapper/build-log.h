// build-log: the wrapper's record of a build, one JSON object per line.
//
// Every compile that produced an object appends
//   {"cwd", "compiler", "launcher", "args", "command", "added", "source",
//    "object", "language", "split", "time", "env", "headers"}
// and every link appends
//   {"link": true, "cwd", "compiler", "launcher", "args", "command", "output",
//    "inputs", "libraries", "time"}.
// "args" are the compiler's arguments as the project wrote them, "command" the
// argv the wrapper really ran, "added" the flags it added; paths in "source",
// "object", "output" and "inputs" are absolute (not resolved through symbolic
// links); "split" marks an object compiled on its own from a command that also
// linked (see split-compile.h); "time" is seconds since the epoch. "env" is
// the compiler's environment ("NAME=value", the wrapper's own variables for the
// log left out) and, with "cwd" and "command", is what `suture build` needs to
// run the same compile again in the patched tree when the project's build does
// not; "headers" are the absolute paths of every file the compile read besides
// its source (dependency-file.h), or null when the compiler did not say.
//
// make -j runs many wrappers at once: each line is appended with a single
// write() on a descriptor opened with O_APPEND, which Linux applies atomically
// to a regular file, so lines never interleave or tear.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace suture::build::wrapper {

struct CompileRecord {
  std::string cwd;
  std::string compiler;
  std::vector<std::string> launcher;
  std::vector<std::string> args;
  std::vector<std::string> command;
  std::vector<std::string> added;
  std::string source;
  std::string object;
  std::string language;
  bool split = false;
  double time = 0;
  std::vector<std::string> env;
  std::optional<std::vector<std::string>> headers;
};

struct LinkRecord {
  std::string cwd;
  std::string compiler;
  std::vector<std::string> launcher;
  std::vector<std::string> args;
  std::vector<std::string> command;
  std::string output;
  std::vector<std::string> inputs;
  std::vector<std::string> libraries;
  double time = 0;
};

// One line, with its newline.
std::string to_json_line(const CompileRecord& record);
std::string to_json_line(const LinkRecord& record);

// Appends each line with one write(). Throws Error("LOG: cannot append: ...").
void append_lines(const std::string& log, const std::vector<std::string>& lines);

// Seconds since the epoch, with sub-second precision.
double now();

}  // namespace suture::build::wrapper
