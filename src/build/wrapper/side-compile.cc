#include "build/wrapper/side-compile.h"

#include <string_view>

namespace suture::build::wrapper {
namespace {

// How many words a dependency-file option takes (0: not one).
size_t dependency_words(const std::string& arg, bool has_next) {
  if (arg == "-MD" || arg == "-MMD" || arg == "-MP" || arg == "-MG") return 1;
  if (arg == "-MF" || arg == "-MT" || arg == "-MQ") return has_next ? 2 : 1;
  std::string_view a = arg;
  if (a.starts_with("-MF") || a.starts_with("-MT") || a.starts_with("-MQ")) return 1;
  if (a.starts_with("-Wp,-MD,") || a.starts_with("-Wp,-MMD,")) return 1;
  return 0;
}

}  // namespace

std::vector<std::string> side_compile_args(const std::vector<std::string>& args, const CommandLine& line, size_t source,
                                           const std::vector<std::string>& extra, const std::string& output) {
  std::vector<bool> drop(args.size(), false);
  for (size_t s = 0; s < line.sources.size(); ++s)
    if (s != source) drop[line.sources[s].arg] = true;
  for (size_t i : line.output_args) drop[i] = true;
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    if (drop[i]) continue;
    // An operand (the source) is never an option, whatever it is called.
    bool operand = i == line.sources[source].arg;
    if (size_t n = operand ? 0 : dependency_words(args[i], i + 1 < args.size())) {
      i += n - 1;
      continue;
    }
    out.push_back(args[i]);
    // "-I -MD" names a directory: the word after such an option is its argument.
    if (!operand && takes_separate_argument(args[i]) && i + 1 < args.size() && !drop[i + 1]) out.push_back(args[++i]);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  out.push_back("-o");
  out.push_back(output);
  return out;
}

}  // namespace suture::build::wrapper
