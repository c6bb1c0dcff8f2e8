// command-line: what a gcc/clang command line asks the driver to do.
//
// The wrapper sits where the project's compiler was and sees every invocation:
// compiles, links, configure probes, `--version`, preprocessing. It must change
// only compiles (to add the flags per-function comparison needs) and must know,
// for each compile, which source went into which object, spelled the way the
// compiler itself would name it (`cc -c dir/x.c` writes ./x.o). So this file
// reads a command line the way the gcc driver does: options that take a
// separate argument consume it, `-x LANG` sets the language of the operands
// after it, an operand's extension decides its language otherwise, and any
// other operand is a linker input. Nothing here runs a process or touches the
// file system except to read @response files.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace suture::build::wrapper {

enum class Step {
  compile,           // -c: each source to its own object
  compile_and_link,  // sources and no -c: the driver compiles to temporaries, then links
  link,              // only objects, archives and libraries
  other,             // preprocessing, -S, queries, probes we have no reason to touch
};

struct Source {
  std::string path;                // as written on the command line
  std::string language;            // gcc's -x name: "c", "c++", "assembler-with-cpp"...
  bool explicit_language = false;  // from -x rather than from the extension
  size_t arg = 0;                  // index in the arguments
};

struct CommandLine {
  Step step = Step::other;
  std::string why;                     // for Step::other: what made it so ("-E", "no input files")
  std::vector<Source> sources;         // operands the driver compiles
  std::vector<std::string> inputs;     // other operands: objects, archives, shared libraries, scripts
  std::vector<std::string> libraries;  // "-lNAME", in order
  std::optional<std::string> output;   // the -o argument, as written
  // Where things are in the arguments (indices; a separate argument counts with its option).
  std::vector<size_t> input_args;     // each of `inputs`
  std::vector<size_t> output_args;    // -o
  std::vector<size_t> language_args;  // -x
  std::vector<size_t> library_args;   // -l
  bool function_sections = false;      // -ffunction-sections already given
  bool data_sections = false;          // -fdata-sections already given
  bool dependency_file = false;        // -MD or -MMD
  bool dependency_file_named = false;  // -MF
  std::optional<std::string> dependency_output;  // the -MF argument, as written
  bool dependency_target = false;      // -MT or -MQ
};

// Whether OPTION takes the next word as its argument when written alone ("-I", "-MF", "-o").
bool takes_separate_argument(std::string_view option);

// Reads the arguments after the compiler's name (response files already expanded).
CommandLine parse_command_line(const std::vector<std::string>& args);

// The language gcc gives a file by its extension ("c", "c++", "assembler"...),
// or "" for a file it hands to the linker.
std::string language_of(std::string_view path);

// The flags a compile needs for per-function comparison that it lacks:
// -ffunction-sections and -fdata-sections. Nothing that changes code otherwise.
std::vector<std::string> flags_to_add(const CommandLine& line);

// For Step::compile: the absolute object of each source, in order. Without -o
// the driver writes BASENAME.o in the current directory, whatever directory the
// source is in.
std::vector<std::string> objects_of(const CommandLine& line, const std::string& cwd);

// For the link steps: the absolute output (a.out without -o).
std::string link_output(const CommandLine& line, const std::string& cwd);

// PATH made absolute against CWD and normalised, without resolving symbolic links
// (the build saw the path as written).
std::string absolute_path(const std::string& path, const std::string& cwd);

// "out/prog.bin" -> "out/prog", "x.c" -> "x", "dir.d/x" -> "dir.d/x".
std::string without_extension(const std::string& path);

// Replaces each readable @FILE by the words in it, as the gcc driver does
// (whitespace separates, quotes and backslashes escape; nested files too). An
// @FILE that cannot be read stays as it is: the driver takes it literally too.
std::vector<std::string> expand_response_files(const std::vector<std::string>& args, const std::string& cwd);

}  // namespace suture::build::wrapper
