#include "build/wrapper/real-compiler.h"

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <filesystem>

#include "build/wrapper/command-line.h"
#include "common/error.h"

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> path_entries(const std::string& path) {
  std::vector<std::string> entries;
  size_t start = 0;
  while (true) {
    auto colon = path.find(':', start);
    auto entry = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
    entries.push_back(entry.empty() ? "." : entry);
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  return entries;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string basename_of(const std::string& path) { return fs::path(path).filename().string(); }

// What a program found on PATH really is: ccache's masquerading links
// (/usr/lib/ccache/gcc -> ../../bin/ccache) are launchers, not compilers.
bool resolves_to_launcher(const std::string& path) {
  std::error_code ec;
  auto target = fs::canonical(path, ec);
  return !ec && is_launcher(target.filename().string());
}

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t') ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

// Whether WORD names a program rather than being the first of the compiler's
// arguments: not an option, not a source by its extension, and executable.
bool names_program(const std::string& word, const Environment& env) {
  if (word.empty() || word[0] == '-' || !language_of(word).empty()) return false;
  return find_program(word, env).has_value();
}

// The compiler NAME stands for, from PATH entry FIRST on. A ccache
// masquerading link found on the way becomes the launcher (unless a wrapper
// above us already runs one, or INV already has one).
void resolve_compiler(const std::string& name, const Environment& env, size_t first, Invocation& inv) {
  if (name.find('/') != std::string::npos) {
    auto found = find_program(name, env);
    if (!found) fail("suture-cc: {}: not an executable (or it is the wrapper itself)", name);
    if (resolves_to_launcher(*found))
      fail("suture-cc: {}: is a link to a compiler launcher, not a compiler; name the compiler after it", name);
    inv.compiler = *found;
    return;
  }
  auto entries = path_entries(env.path);
  for (size_t i = first; i < entries.size(); ++i) {
    auto candidate = absolute_path(entries[i] + "/" + name, env.cwd);
    if (!is_executable_file(candidate) || same_file(candidate, env.own_exe)) continue;
    if (resolves_to_launcher(candidate)) {
      if (!env.nested && inv.launcher.empty()) inv.launcher.push_back(fs::canonical(candidate).string());
      continue;
    }
    inv.compiler = candidate;
    return;
  }
  fail("suture-cc: {}: no compiler of that name on PATH{}", name,
       first > 0 ? " after the wrapper's directory" : " (other than the wrapper itself)");
}

// WORDS = [launcher] compiler args... as the project spelled them.
Invocation from_words(std::vector<std::string> words, const Environment& env) {
  Invocation inv;
  if (is_launcher(basename_of(words[0]))) {
    auto launcher = find_program(words[0], env);
    if (!launcher) fail("suture-cc: {}: no launcher of that name on PATH", words[0]);
    if (words.size() < 2 || words[1].empty() || words[1][0] == '-') {
      // `ccache -s`, `ccache --version`: the launcher's own business.
      inv.compiler = *launcher;
      inv.args.assign(words.begin() + 1, words.end());
      inv.pass_through = true;
      return inv;
    }
    if (!env.nested) inv.launcher.push_back(*launcher);
    words.erase(words.begin());
  }
  resolve_compiler(words[0], env, 0, inv);
  inv.args.assign(words.begin() + 1, words.end());
  return inv;
}

// The index of the wrapper's own directory in PATH, if it is there: where a
// link named ARGV0 was found.
std::optional<size_t> own_path_entry(const std::string& argv0, const Environment& env) {
  auto entries = path_entries(env.path);
  for (size_t i = 0; i < entries.size(); ++i) {
    if (argv0.find('/') != std::string::npos) {
      if (same_file(fs::path(argv0).parent_path().string().empty() ? "." : fs::path(argv0).parent_path().string(),
                    entries[i]))
        return i;
    } else if (same_file(entries[i] + "/" + argv0, env.own_exe)) {
      return i;
    }
  }
  return std::nullopt;
}

}  // namespace

bool is_launcher(const std::string& name) {
  constexpr std::array launchers = {"ccache", "sccache", "distcc", "icecc"};
  for (auto l : launchers)
    if (name == l) return true;
  return false;
}

bool called_directly(const std::string& argv0) { return basename_of(argv0).starts_with("suture-c"); }

std::vector<std::string> Invocation::command(const std::vector<std::string>& with_args) const {
  std::vector<std::string> argv = launcher;
  argv.push_back(compiler);
  argv.insert(argv.end(), with_args.begin(), with_args.end());
  return argv;
}

std::optional<std::string> find_program(const std::string& name, const Environment& env, size_t first) {
  if (name.find('/') != std::string::npos) {
    auto path = absolute_path(name, env.cwd);
    if (is_executable_file(path) && !same_file(path, env.own_exe)) return path;
    return std::nullopt;
  }
  auto entries = path_entries(env.path);
  for (size_t i = first; i < entries.size(); ++i) {
    auto candidate = absolute_path(entries[i] + "/" + name, env.cwd);
    if (is_executable_file(candidate) && !same_file(candidate, env.own_exe)) return candidate;
  }
  return std::nullopt;
}

Invocation resolve_invocation(const std::vector<std::string>& argv, const Environment& env) {
  const std::string& argv0 = argv.at(0);
  std::vector<std::string> rest(argv.begin() + 1, argv.end());

  if (called_directly(argv0)) {
    if (!rest.empty() && names_program(rest[0], env)) return from_words(rest, env);
    bool cxx = basename_of(argv0).find("++") != std::string::npos;
    const std::string& variable = cxx ? env.real_cxx : env.real_cc;
    auto words = split_words(variable);
    if (words.empty())
      fail("suture-cc: no compiler named: give it first (suture-cc gcc ...) or set {}",
           cxx ? "SUTURE_REAL_CXX" : "SUTURE_REAL_CC");
    words.insert(words.end(), rest.begin(), rest.end());
    return from_words(words, env);
  }

  // Called through a link: the next program of the link's name after our directory.
  std::string name = basename_of(argv0);
  auto own = own_path_entry(argv0, env);
  size_t first = own ? *own + 1 : 0;
  if (is_launcher(name)) {
    auto entries = path_entries(env.path);
    for (size_t i = first; i < entries.size(); ++i) {
      auto candidate = absolute_path(entries[i] + "/" + name, env.cwd);
      if (!is_executable_file(candidate) || same_file(candidate, env.own_exe)) continue;
      rest.insert(rest.begin(), candidate);
      return from_words(rest, env);
    }
    fail("suture-cc: {}: no real {} on PATH after the wrapper's directory", name, name);
  }
  Invocation inv;
  resolve_compiler(name, env, first, inv);
  inv.args = rest;
  return inv;
}

}  // namespace suture::build::wrapper
