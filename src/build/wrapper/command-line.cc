#include "build/wrapper/command-line.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

// Options whose argument may be the next word. Missing one here would make the
// parser take that word for an operand (`-include config.h` for a header source,
// `-MF x.d` for a linker input), so the list errs on the side of gcc's and
// clang's full sets.
constexpr std::array separate_argument_options = {
    "-o",           "-x",           "-I",          "-D",           "-U",
    "-include",     "-imacros",     "-iquote",     "-isystem",     "-idirafter",
    "-iprefix",     "-iwithprefix", "-iwithprefixbefore",          "-isysroot",
    "-imultilib",   "-MF",          "-MT",         "-MQ",          "-L",
    "-l",           "-T",           "-u",          "-e",           "-z",
    "-Xlinker",     "-Xassembler",  "-Xpreprocessor",              "-Xclang",
    "-Xanalyzer",   "-mllvm",       "-aux-info",   "-dumpbase",    "-dumpbase-ext",
    "-dumpdir",     "--param",      "-A",          "-B",           "-wrapper",
    "--sysroot",    "-target",      "-arch",       "-MJ",          "-include-pch",
    "-ivfsoverlay", "-resource-dir", "--specs",    "-specs",       "--serialize-diagnostics",
};

// Options after which the driver neither compiles to an object nor links.
constexpr std::array non_building_options = {
    "-E",         "-S",          "-M",           "-MM",          "-fsyntax-only",
    "-###",       "--version",   "-dumpversion", "-dumpfullversion", "-dumpmachine",
    "-dumpspecs", "--help",      "--target-help", "-emit-llvm",  "-emit-ast",
};

bool is_one_of(std::string_view word, const auto& list) {
  return std::find(std::begin(list), std::end(list), word) != std::end(list);
}

std::string extension(std::string_view path) {
  auto slash = path.rfind('/');
  auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return "";
  return std::string(name.substr(dot));
}

bool is_header_language(std::string_view language) { return language.find("header") != std::string_view::npos; }

// Splits a response file the way libiberty's buildargv does.
std::vector<std::string> split_response_text(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      word += text[++i];
      in_word = true;
    } else if (quote) {
      if (c == quote) quote = 0;
      else word += c;
    } else if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (in_word) words.push_back(std::move(word));
  return words;
}

void expand_into(const std::vector<std::string>& args, const std::string& cwd, int depth,
                 std::vector<std::string>& out) {
  for (const auto& arg : args) {
    if (arg.size() > 1 && arg[0] == '@' && depth < 16) {
      std::ifstream file(absolute_path(arg.substr(1), cwd), std::ios::binary);
      if (file) {
        std::stringstream text;
        text << file.rdbuf();
        expand_into(split_response_text(text.str()), cwd, depth + 1, out);
        continue;
      }
    }
    out.push_back(arg);
  }
}

}  // namespace

std::string language_of(std::string_view path) {
  auto ext = extension(path);
  if (ext == ".c") return "c";
  if (ext == ".i") return "cpp-output";
  if (ext == ".ii") return "c++-cpp-output";
  if (ext == ".cc" || ext == ".cp" || ext == ".cxx" || ext == ".cpp" || ext == ".CPP" || ext == ".c++" || ext == ".C")
    return "c++";
  if (ext == ".m") return "objective-c";
  if (ext == ".mi") return "objective-c-cpp-output";
  if (ext == ".mm" || ext == ".M") return "objective-c++";
  if (ext == ".mii") return "objective-c++-cpp-output";
  if (ext == ".s") return "assembler";
  if (ext == ".S" || ext == ".sx") return "assembler-with-cpp";
  if (ext == ".h") return "c-header";
  if (ext == ".hh" || ext == ".H" || ext == ".hp" || ext == ".hxx" || ext == ".hpp" || ext == ".HPP" || ext == ".h++" ||
      ext == ".tcc")
    return "c++-header";
  return "";
}

bool takes_separate_argument(std::string_view option) { return is_one_of(option, separate_argument_options); }

CommandLine parse_command_line(const std::vector<std::string>& args) {
  CommandLine line;
  bool compile_only = false;
  bool stdin_source = false;
  std::string non_building;
  std::string language = "none";

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    bool has_next = i + 1 < args.size();

    if (arg.empty() || arg == "-" || arg[0] != '-') {
      if (arg == "-") {
        stdin_source = true;
        continue;
      }
      if (language != "none") {
        line.sources.push_back({arg, language, true, i});
      } else if (auto by_extension = language_of(arg); !by_extension.empty()) {
        line.sources.push_back({arg, by_extension, false, i});
      } else {
        line.inputs.push_back(arg);
        line.input_args.push_back(i);
      }
      continue;
    }

    if (arg == "-c") compile_only = true;
    else if (is_one_of(arg, non_building_options) || arg.starts_with("-print-") || arg.starts_with("--print-") ||
             arg.starts_with("--help="))
      non_building = arg;
    else if (arg == "-ffunction-sections") line.function_sections = true;
    else if (arg == "-fdata-sections") line.data_sections = true;
    else if (arg == "-MD" || arg == "-MMD") line.dependency_file = true;

    auto note = [&](std::vector<size_t>& where, bool separate) {
      where.push_back(i);
      if (separate) where.push_back(i + 1);
    };
    if (arg == "-o" && has_next) {
      line.output = args[i + 1];
      note(line.output_args, true);
    } else if (arg.starts_with("-o") && arg.size() > 2 && !arg.starts_with("-objc")) {
      line.output = arg.substr(2);
      note(line.output_args, false);
    } else if (arg == "-x" && has_next) {
      language = args[i + 1];
      note(line.language_args, true);
    } else if (arg.starts_with("-x") && arg.size() > 2) {
      language = arg.substr(2);
      note(line.language_args, false);
    } else if (arg == "-l" && has_next) {
      line.libraries.push_back("-l" + args[i + 1]);
      note(line.library_args, true);
    } else if (arg.starts_with("-l") && arg.size() > 2) {
      line.libraries.push_back(arg);
      note(line.library_args, false);
    }

    if (arg.starts_with("-MF")) {
      line.dependency_file_named = true;
      if (arg.size() > 3) line.dependency_output = arg.substr(3);
      else if (has_next) line.dependency_output = args[i + 1];
    }
    if (arg.starts_with("-MT") || arg.starts_with("-MQ")) line.dependency_target = true;

    if (is_one_of(arg, separate_argument_options) && has_next) ++i;
  }

  auto header = std::find_if(line.sources.begin(), line.sources.end(),
                             [](const Source& s) { return is_header_language(s.language); });
  if (!non_building.empty()) line.why = non_building;
  else if (stdin_source) line.why = "source on standard input";
  else if (header != line.sources.end()) line.why = header->path + ": precompiled header";
  else if (compile_only && line.sources.empty()) line.why = "-c without sources";
  else if (compile_only && line.sources.size() > 1 && line.output) line.why = "-o with several sources and -c";
  else if (!compile_only && line.sources.empty() && line.inputs.empty() && line.libraries.empty())
    line.why = "no input files";

  if (!line.why.empty()) line.step = Step::other;
  else if (compile_only) line.step = Step::compile;
  else if (!line.sources.empty()) line.step = Step::compile_and_link;
  else line.step = Step::link;
  return line;
}

std::vector<std::string> flags_to_add(const CommandLine& line) {
  std::vector<std::string> flags;
  if (!line.function_sections) flags.push_back("-ffunction-sections");
  if (!line.data_sections) flags.push_back("-fdata-sections");
  return flags;
}

std::string absolute_path(const std::string& path, const std::string& cwd) {
  return (fs::path(cwd) / path).lexically_normal().string();
}

std::string without_extension(const std::string& path) {
  auto ext = extension(path);
  return path.substr(0, path.size() - ext.size());
}

std::vector<std::string> objects_of(const CommandLine& line, const std::string& cwd) {
  std::vector<std::string> objects;
  if (line.output) {
    objects.push_back(absolute_path(*line.output, cwd));
    return objects;
  }
  for (const auto& source : line.sources)
    objects.push_back(absolute_path(without_extension(fs::path(source.path).filename().string()) + ".o", cwd));
  return objects;
}

std::string link_output(const CommandLine& line, const std::string& cwd) {
  return absolute_path(line.output.value_or("a.out"), cwd);
}

std::vector<std::string> expand_response_files(const std::vector<std::string>& args, const std::string& cwd) {
  std::vector<std::string> out;
  expand_into(args, cwd, 0, out);
  return out;
}

}  // namespace suture::build::wrapper
