#include "build/wrapper/split-compile.h"

#include <cstdint>
#include <filesystem>

#include <fmt/format.h>

#include "common/fnv1a.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

// Marks the words at WHERE.
void mark(std::vector<bool>& words, const std::vector<size_t>& where) {
  for (auto i : where) words[i] = true;
}

// Where gcc 12 puts the dependency file of `cc -MD SOURCES [-o OUT]`, and the
// target it names in it.
std::pair<std::string, std::string> combined_dependency_file(const CommandLine& line, const Source& source) {
  if (line.output) return {without_extension(*line.output) + ".d", *line.output};
  std::string stem = without_extension(fs::path(source.path).filename().string());
  if (line.sources.size() == 1) return {stem + ".d", stem + ".o"};
  return {"a-" + stem + ".d", stem + ".o"};
}

}  // namespace

SplitPlan plan_split(const std::vector<std::string>& args, const CommandLine& line, const std::string& object_dir,
                     const std::string& cwd) {
  std::string output = link_output(line, cwd);
  std::string dir = fmt::format("{}/{}-{:016x}", object_dir, fs::path(output).filename().string(), fnv1a(output));

  // A single compile repeats every word but the operands, -o, -l and -x.
  std::vector<bool> drop(args.size(), false);
  for (const auto& source : line.sources) drop[source.arg] = true;
  mark(drop, line.input_args);
  mark(drop, line.output_args);
  mark(drop, line.language_args);
  mark(drop, line.library_args);

  SplitPlan plan;
  for (size_t s = 0; s < line.sources.size(); ++s) {
    const auto& source = line.sources[s];
    SplitCompile compile;
    compile.source = s;
    compile.object = absolute_path(
        fmt::format("{}/{}-{}.o", dir, s, without_extension(fs::path(source.path).filename().string())), cwd);
    for (size_t i = 0; i < args.size(); ++i)
      if (!drop[i]) compile.args.push_back(args[i]);
    for (auto& flag : flags_to_add(line)) compile.args.push_back(flag);
    if (line.dependency_file && line.dependency_output) compile.dependency_file = *line.dependency_output;
    if (line.dependency_file && !line.dependency_file_named) {
      auto [file, target] = combined_dependency_file(line, source);
      compile.dependency_file = file;
      compile.args.push_back("-MF");
      compile.args.push_back(file);
      if (!line.dependency_target) {
        compile.args.push_back("-MT");
        compile.args.push_back(target);
      }
    }
    compile.args.push_back("-c");
    if (source.explicit_language) {
      compile.args.push_back("-x");
      compile.args.push_back(source.language);
    }
    compile.args.push_back(source.path);
    compile.args.push_back("-o");
    compile.args.push_back(compile.object);
    plan.compiles.push_back(std::move(compile));
  }

  // The link: every -x goes (what remains are objects and linker inputs, which
  // all had language "none"), each source becomes its object in place.
  std::vector<size_t> source_at(args.size(), SIZE_MAX);
  for (size_t s = 0; s < line.sources.size(); ++s) source_at[line.sources[s].arg] = s;
  std::vector<bool> language(args.size(), false);
  mark(language, line.language_args);
  for (size_t i = 0; i < args.size(); ++i) {
    if (source_at[i] != SIZE_MAX) plan.link_args.push_back(plan.compiles[source_at[i]].object);
    else if (!language[i]) plan.link_args.push_back(args[i]);
  }
  return plan;
}

}  // namespace suture::build::wrapper
