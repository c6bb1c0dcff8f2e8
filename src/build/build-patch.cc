// suture build, the driver:
//   1. original build: a copy of the source tree, cleaned, built through the
//      compiler wrapper (every object with one section per function, every
//      compile and link logged); cached, keyed by the tree's path and build and
//      clean commands, and reused while the tree's files are unchanged
//   2. patched build: a copy of the original build (timestamps kept, so the
//      project's own build rebuilds only what the diff affects), the diffs
//      applied with patch -p1, built again through the wrapper
//   3. replay: a translation unit whose source, or a header it read (the
//      wrapper logs both), the diff touches but that the project's build did
//      not recompile -- Redis's `make redis-server` never rebuilds deps/lua, a
//      plain Makefile without -MD never follows headers -- is compiled again
//      by running the compile the wrapper logged in the original build (same
//      cwd, arguments and environment, its paths moved to the patched tree).
//      Rejected: making the project's build do it (touching files to force
//      make only works for make, and only where the rule exists at all);
//      refusing (leaves the user with nothing but an error for every fix in a
//      vendored dependency).
//   4. accounting: every file the diff touches is compiled into an object that
//      is compared, read by such a compile (headers), a build description, or
//      reported as outside the build; a touched source that no compile of
//      either build uses is an error, never a silent "nothing changed"
//   5. per recompiled object: compare with its original (object-diff), and
//      group by the binary it links into, directly or through a static archive
//      (archive.h); a source new in the patched tree is compared with an empty
//      object, so all of it is new, and its binary is the one the patched build
//      linked it into. When a changed function calls another, both compiles
//      are run again on the side with -fno-ipa-ra (cached) and compared too,
//      to tell callers that differ only by register allocation around calls to
//      changed callees (diff/register-allocation.cc)
//   6. per binary: leave those callers to the running program, extract what
//      changed (extract), fidelity check of every replaced and kept function
//      against the binary that runs, then pack against it (build-id of the
//      running binary); a kept caller whose callee's old register use pack
//      cannot read, so that no thunk covers it, is replaced after all
#include "build/build-patch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "build/diff/object-diff.h"
#include "build/diff/register-allocation.h"
#include "build/extract/extract-patch.h"
#include "build/fidelity/fidelity-check.h"
#include "build/pack.h"
#include "build/wrapper/archive.h"
#include "build/wrapper/command-line.h"
#include "build/wrapper/side-compile.h"
#include "common/error.h"
#include "common/fnv1a.h"
#include "common/read-file.h"
#include "elf/elf-file.h"
#include "redirect/register-contract.h"

namespace suture::build {
namespace {

namespace fs = std::filesystem;

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `command` with sh in `dir`; output goes to `log` (and the terminal with -v).
void run(const std::string& command, const fs::path& dir, const fs::path& log, bool verbose,
         const std::vector<std::pair<std::string, std::string>>& env = {}) {
  std::string line;
  for (const auto& [k, v] : env) line += k + "=" + quote(v) + " ";
  line += "sh -c " + quote(command);
  std::string full = "cd " + quote(dir.string()) + " && " + line + (verbose ? " 2>&1 | tee -a " : " >>") +
                     quote(log.string()) + (verbose ? "; exit ${PIPESTATUS[0]}" : " 2>&1");
  if (verbose) fmt::print(stderr, "suture build: $ {}  (in {})\n", command, dir.string());
  int status = std::system(("bash -c " + quote(full)).c_str());
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail("'{}' failed in {} (see {})", command, dir.string(), log.string());
}

// What a build reads: sources, headers and build descriptions. Logs, outputs
// and editor files of the tree do not invalidate the cached original build.
bool build_input(const fs::path& p) {
  static const std::set<std::string> exts = {".c",   ".cc", ".cpp", ".cxx", ".C",     ".S",  ".s",   ".h",
                                             ".hh",  ".hpp", ".hxx", ".inc", ".def",  ".mk", ".cmake", ".in",
                                             ".am",  ".ac",  ".m4",  ".ld",  ".lds",  ".sh", ".py"};
  static const std::set<std::string> names = {"Makefile", "makefile", "GNUmakefile", "CMakeLists.txt", "configure",
                                              "meson.build"};
  return exts.count(p.extension().string()) > 0 || names.count(p.filename().string()) > 0;
}

// Paths, sizes and modification times of the build inputs of the tree (.git aside).
std::string fingerprint(const fs::path& tree) {
  std::vector<std::string> entries;
  for (auto it = fs::recursive_directory_iterator(tree); it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_directory() && it->path().filename() == ".git") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file() || !build_input(it->path())) continue;
    struct stat st {};
    if (::stat(it->path().c_str(), &st) != 0) continue;
    entries.push_back(fmt::format("{} {} {}.{}", fs::relative(it->path(), tree).string(), st.st_size,
                                  st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
  }
  std::sort(entries.begin(), entries.end());
  Fnv1a hash;
  for (const auto& e : entries) hash.add_text(e).add_text("\n");
  return fmt::format("{:016x}", hash.value());
}

fs::path cache_root(const BuildOptions& options) {
  if (!options.cache.empty()) return options.cache;
  if (const char* c = std::getenv("SUTURE_CACHE_DIR")) return c;
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return fs::path(x) / "suture";
  if (const char* h = std::getenv("HOME")) return fs::path(h) / ".cache" / "suture";
  return fs::temp_directory_path() / "suture-cache";
}

fs::path find_wrapper(const BuildOptions& options) {
  if (!options.wrapper.empty()) return fs::absolute(options.wrapper);
  fs::path self = fs::read_symlink("/proc/self/exe").parent_path();
  for (fs::path candidate : {self / "suture-cc", self / ".." / "build" / "wrapper" / "suture-cc"})
    if (fs::exists(candidate)) return fs::canonical(candidate);
  if (const char* path = std::getenv("PATH")) {
    std::stringstream ss(path);
    std::string dir;
    while (std::getline(ss, dir, ':'))
      if (!dir.empty() && fs::exists(fs::path(dir) / "suture-cc")) return fs::path(dir) / "suture-cc";
  }
  fail("cannot find suture-cc (the compiler wrapper); give it with --wrapper");
}

struct Compile {
  fs::path source, object, cwd;
  std::string compiler;
  std::vector<std::string> launcher, command, env;
  std::optional<std::vector<fs::path>> headers;  // nullopt: the wrapper could not tell
  bool split = false;                            // the object lives outside the tree
};
struct Link {
  fs::path output;
  std::vector<fs::path> inputs;
};
struct BuildLog {
  std::vector<Compile> compiles;
  std::vector<Link> links;
};

BuildLog read_log(const fs::path& path) {
  BuildLog log;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) fail("{}: a line is not JSON", path.string());
    if (j.value("link", false)) {
      Link l;
      l.output = j.at("output").get<std::string>();
      for (const auto& i : j.at("inputs")) l.inputs.push_back(i.get<std::string>());
      log.links.push_back(std::move(l));
    } else if (j.contains("object")) {
      Compile c;
      c.source = j.at("source").get<std::string>();
      c.object = j.at("object").get<std::string>();
      c.cwd = j.value("cwd", std::string());
      c.compiler = j.value("compiler", std::string());
      c.launcher = j.value("launcher", std::vector<std::string>());
      c.command = j.value("command", std::vector<std::string>());
      c.env = j.value("env", std::vector<std::string>());
      c.split = j.value("split", false);
      if (auto h = j.find("headers"); h != j.end() && h->is_array()) {
        c.headers.emplace();
        for (const auto& p : *h) c.headers->push_back(p.get<std::string>());
      }
      log.compiles.push_back(std::move(c));
    }
  }
  return log;
}

// The files a unified diff touches (the "+++ b/PATH" side, -p1).
std::vector<std::string> touched_files(const std::string& diff) {
  std::vector<std::string> files;
  std::ifstream in(diff);
  if (!in) fail("{}: cannot read", diff);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("+++ ", 0) != 0) continue;
    std::string path = line.substr(4);
    if (auto tab = path.find('\t'); tab != std::string::npos) path.resize(tab);
    if (path == "/dev/null") continue;
    if (auto slash = path.find('/'); slash != std::string::npos) path = path.substr(slash + 1);
    files.push_back(path);
  }
  if (files.empty()) fail("{}: not a unified diff (no +++ lines)", diff);
  return files;
}

bool is_source(const fs::path& p) {
  static const std::set<std::string> exts = {".c", ".cc", ".cpp", ".cxx", ".C", ".S", ".s"};
  return exts.count(p.extension().string()) > 0;
}

// Files that compiles include: what a compile with unknown headers may have read.
bool is_header(const fs::path& p) {
  static const std::set<std::string> exts = {".h", ".hh", ".hpp", ".hxx", ".h++", ".inc", ".def", ".tcc", ".ipp"};
  return exts.count(p.extension().string()) > 0;
}

// What tells the build what to do rather than being compiled.
bool is_build_description(const fs::path& p) {
  static const std::set<std::string> exts = {".mk", ".cmake", ".am", ".ac", ".m4", ".ld", ".lds"};
  static const std::set<std::string> names = {"Makefile", "makefile", "GNUmakefile", "CMakeLists.txt",
                                              "configure", "meson.build", "Makefile.in"};
  return exts.count(p.extension().string()) > 0 || names.count(p.filename().string()) > 0;
}

// PATH relative to TREE when it lies inside it ("" otherwise).
std::string inside(const fs::path& path, const fs::path& tree) {
  auto rel = path.lexically_normal().lexically_relative(tree);
  if (rel.empty() || *rel.begin() == "..") return "";
  return rel.string();
}

// Moves every path under one of FROM to the same place under TO, inside
// arguments too ("-I/…/original/src", "-MF/…/original-objects/x.d"). A prefix
// counts only when a path separator or the end follows it, so "original"
// never matches "original-objects".
struct PathMap {
  std::vector<std::pair<std::string, std::string>> moves;  // longest first
  std::string operator()(const std::string& text) const {
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      bool moved = false;
      for (const auto& [from, to] : moves) {
        if (text.compare(i, from.size(), from) != 0) continue;
        size_t end = i + from.size();
        if (end < text.size() && text[end] != '/' && text[end] != ':' && text[end] != ' ' && text[end] != '=')
          continue;
        out += to;
        i = end;
        moved = true;
        break;
      }
      if (!moved) out += text[i++];
    }
    return out;
  }
};

// Runs ARGV in CWD with exactly ENV, output appended to LOG; returns whether it succeeded.
bool run_exact(const std::vector<std::string>& argv, const fs::path& cwd, const std::vector<std::string>& env,
               const fs::path& log) {
  if (argv.empty()) return false;
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int out = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (out < 0) fail("{}: cannot open: {}", log.string(), errno_text(errno));
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(out);
    fail("cannot fork: {}", errno_text(errno));
  }
  if (pid == 0) {
    if (::chdir(cwd.c_str()) != 0) _exit(126);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::execve(args[0], args.data(), envp.data());
    _exit(127);
  }
  ::close(out);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::string shell_words(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& w : words) line += (line.empty() ? "" : " ") + w;
  return line;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

// Compiles C again with -fno-ipa-ra added, into CACHE, for the comparison that
// tells register allocation apart from every other difference
// (diff/register-allocation.cc); the project's object and dependency file stay
// as they are (wrapper/side-compile.h). The object is keyed by the compile
// line, directory and environment and the contents of the source and of every
// file the compile read, so every later fix reuses the original tree's, and the
// same fix built again the patched tree's. A compile whose headers the wrapper
// could not tell is run every time. nullopt when it fails (LOG says why).
std::optional<fs::path> compile_without_ipa_ra(const Compile& c, const fs::path& cache, const fs::path& log,
                                               bool verbose) {
  size_t prefix = c.launcher.size() + 1;  // launcher words, then the compiler
  std::optional<size_t> source;
  std::vector<std::string> args;
  wrapper::CommandLine line;
  if (c.command.size() > prefix) {
    args.assign(c.command.begin() + static_cast<ptrdiff_t>(prefix), c.command.end());
    line = wrapper::parse_command_line(args);
    for (size_t i = 0; i < line.sources.size(); ++i)
      if (fs::path(wrapper::absolute_path(line.sources[i].path, c.cwd.string())) == c.source) source = i;
  }
  if (!source) {
    std::ofstream(log, std::ios::app) << c.source.string() << ": its logged compile line does not compile it: "
                                      << shell_words(c.command) << "\n";
    return std::nullopt;
  }

  // The line as it will run, but for the scratch name: the wrapper's own
  // dependency file, which the line leaves out, has a new name every build.
  std::vector<std::string> argv(c.command.begin(), c.command.begin() + static_cast<ptrdiff_t>(prefix));
  for (auto& a : wrapper::side_compile_args(args, line, *source, {"-fno-ipa-ra"}, ""))
    argv.push_back(std::move(a));
  Fnv1a key;
  for (const auto& w : argv) key.add_string(w);
  key.add_string(c.cwd.string());
  // make's own variables reach the compiler but mean nothing to it, and the
  // jobserver's may name a new pipe every build.
  for (const auto& e : c.env)
    if (!e.starts_with("MAKEFLAGS=") && !e.starts_with("MFLAGS=") && !e.starts_with("MAKELEVEL=") &&
        !e.starts_with("MAKE_TERM"))
      key.add_string(e);
  std::vector<fs::path> read{c.source};
  if (c.headers) read.insert(read.end(), c.headers->begin(), c.headers->end());
  for (const auto& f : read) {
    key.add_string(f.string());
    std::error_code ec;
    if (fs::is_regular_file(f, ec)) key.add(read_whole_file(f.string()));
  }
  fs::path object = cache / fmt::format("{}{:016x}.o", c.headers ? "" : "uncached-", key.value());
  if (c.headers && fs::exists(object)) return object;

  fs::create_directories(cache);
  fs::path scratch = cache / fmt::format("{:016x}.{}.tmp.o", key.value(), ::getpid());
  argv.back() = scratch.string();
  if (verbose) fmt::print(stderr, "suture build: $ {}  (in {})\n", shell_words(argv), c.cwd.string());
  if (!run_exact(argv, c.cwd, c.env, log)) {
    fs::remove(scratch);
    return std::nullopt;
  }
  fs::rename(scratch, object);
  return object;
}

// The binaries OBJECT went into, relative to TREE: links that name it, or name
// an archive that holds it.
std::vector<std::string> binaries_of(const fs::path& object, const std::vector<Link>& links, const fs::path& tree) {
  std::vector<std::string> outputs;
  auto wanted = fs::weakly_canonical(object);
  for (const auto& l : links)
    for (const auto& in : l.inputs) {
      bool direct = fs::weakly_canonical(in) == wanted;
      if (direct || (in.extension() == ".a" && fs::exists(in) && wrapper::is_archive(in.string()) &&
                     wrapper::archive_holds(in.string(), object.string()))) {
        outputs.push_back(fs::relative(l.output, tree).string());
        break;
      }
    }
  return outputs;
}

std::string first_file_symbol(const elf::ElfFile& object) {
  for (const auto& s : object.symbols())
    if (s.type == 4 /* STT_FILE */ && !s.name.empty()) return s.name;
  return "";
}

// Copies a tree, keeping modification times.
void copy_tree(const fs::path& from, const fs::path& to, const fs::path& log) {
  fs::remove_all(to);
  fs::create_directories(to);
  run("cp -a " + quote(from.string() + "/.") + " " + quote(to.string()), fs::current_path(), log, false);
}

}  // namespace

BuildReport build_patches(const BuildOptions& options) {
  BuildReport report;
  fs::path source = fs::canonical(options.source);
  fs::path root = fs::absolute(cache_root(options)) / fmt::format("{:016x}", fnv1a(source.string() + "\n" + options.build + "\n" + options.clean));
  fs::create_directories(root);
  fs::path wrapper = find_wrapper(options);
  fs::path shims = root / "shims";
  if (!fs::exists(shims)) {
    fs::create_directories(shims);
    run(quote(wrapper.string()) + " --make-shims " + quote(shims.string()), root, root / "shims.log", options.verbose);
  }
  // The wrapper is put in front of the compiler two ways: shims named like
  // compilers first on PATH (for Makefiles that name their compiler), and CC/CXX
  // (for builds that take the compiler from the environment, absolute paths too).
  const char* path_env = std::getenv("PATH");
  const char* cc_env = std::getenv("CC");
  const char* cxx_env = std::getenv("CXX");
  fs::path wrapper_cxx = wrapper.parent_path() / "suture-c++";
  auto build_env = [&](const fs::path& log) {
    return std::vector<std::pair<std::string, std::string>>{
        {"PATH", shims.string() + ":" + (path_env ? path_env : "/usr/bin:/bin")},
        {"CC", wrapper.string() + " " + (cc_env && *cc_env ? cc_env : "cc")},
        {"CXX", (fs::exists(wrapper_cxx) ? wrapper_cxx : wrapper).string() + " " + (cxx_env && *cxx_env ? cxx_env : "c++")},
        {"SUTURE_BUILD_LOG", log.string()},
        {"SUTURE_OBJDIR", (log.parent_path() / (log.stem().string() + "-objects")).string()}};
  };

  // 1. the original build, cached
  fs::path original = root / "original", original_log = root / "original.log", stamp = root / "stamp";
  // The log's format is part of the key: a log without headers and commands
  // (an older wrapper's) cannot drive replays.
  std::string print = fingerprint(source) + " log-2";
  std::string stamped;
  if (std::ifstream in(stamp); in) std::getline(in, stamped);
  if (stamped == print && fs::exists(original_log)) {
    report.original_cached = true;
  } else {
    fs::remove(stamp);
    fs::remove(original_log);
    fs::remove_all(root / "no-ipa-ra");  // side compiles of the tree as it was
    copy_tree(source, original, root / "copy.log");
    if (!options.clean.empty()) run(options.clean, original, root / "original-build.txt", options.verbose);
    run(options.build, original, root / "original-build.txt", options.verbose, build_env(original_log));
    std::ofstream(stamp) << print << "\n";
  }
  BuildLog before = read_log(original_log);
  if (before.compiles.empty())
    fail("the original build compiled nothing through suture's wrapper (does the build use an absolute compiler "
         "path? see {})",
         (root / "original-build.txt").string());

  // 2. the patched build
  fs::path patched = root / "patched", patched_log = root / "patched.log";
  copy_tree(original, patched, root / "copy.log");
  fs::remove(patched_log);
  std::set<std::string> touched;
  for (const auto& diff : options.diffs) {
    fs::path d = fs::absolute(diff);
    run("patch -p1 --forward --batch < " + quote(d.string()), patched, root / "patch.log", options.verbose);
    for (const auto& f : touched_files(d.string())) touched.insert(f);
  }
  run(options.build, patched, root / "patched-build.txt", options.verbose, build_env(patched_log));
  BuildLog after = read_log(patched_log);

  // 3. replay what the project's build left stale
  auto rel_source = [](const Compile& c, const fs::path& tree) { return inside(c.source, tree); };
  auto reads_touched = [&](const Compile& o) {
    if (touched.count(rel_source(o, original))) return true;
    if (!o.headers)  // the wrapper could not tell: any touched header may be one of them
      return std::any_of(touched.begin(), touched.end(), [](const std::string& f) { return is_header(f); });
    return std::any_of(o.headers->begin(), o.headers->end(),
                       [&](const fs::path& h) { return touched.count(inside(h, original)) > 0; });
  };
  // The patched build redid O: it compiled the same source (into the same
  // object, when both live in the trees; a source may be compiled twice).
  auto redone = [&](const Compile& o) {
    return std::any_of(after.compiles.begin(), after.compiles.end(), [&](const Compile& c) {
      if (rel_source(c, patched) != rel_source(o, original)) return false;
      return c.split || o.split || inside(c.object, patched) == inside(o.object, original);
    });
  };
  fs::path original_objects = root / "original-objects", replay_objects = root / "replay-objects";
  PathMap to_patched{{{original_objects.string(), replay_objects.string()}, {original.string(), patched.string()}}};
  std::sort(to_patched.moves.begin(), to_patched.moves.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  fs::remove_all(replay_objects);
  struct Pair {
    const Compile* original = nullptr;  // null: a source new in the patched tree
    Compile patched;
  };
  std::vector<Pair> pairs;
  for (const auto& o : before.compiles) {
    std::string rel = rel_source(o, original);
    if (rel.empty() || !reads_touched(o) || redone(o)) continue;
    if (!fs::exists(patched / rel)) continue;  // the diff deletes it
    if (o.command.empty()) fail("{}: the build did not recompile it and the build log has no command to replay", rel);
    Compile r = o;
    r.source = to_patched(o.source.string());
    r.object = to_patched(o.object.string());
    r.cwd = to_patched(o.cwd.string());
    r.command.clear();
    for (const auto& a : o.command) r.command.push_back(to_patched(a));
    r.env.clear();
    for (const auto& e : o.env) r.env.push_back(to_patched(e));
    if (r.headers)
      for (auto& h : *r.headers) h = to_patched(h.string());
    fs::create_directories(r.object.parent_path());
    fs::create_directories(replay_objects / "deps");
    fs::path replay_log = root / "replay.txt";
    if (options.verbose) fmt::print(stderr, "suture build: replay {}: $ {}  (in {})\n", rel, shell_words(r.command), r.cwd.string());
    if (!run_exact(r.command, r.cwd, r.env, replay_log))
      fail("{}: the build did not recompile it, and its original compile, replayed in the patched tree, failed "
           "(see {}): $ {}",
           rel, replay_log.string(), shell_words(r.command));
    report.replayed.push_back(rel);
    pairs.push_back({&o, std::move(r)});
  }

  // 4. accounting
  std::set<std::string> recompiled_sources;
  for (const auto& c : after.compiles) {
    auto rel = rel_source(c, patched);
    recompiled_sources.insert(rel);
    // The build's own probes (a foo.c it writes, compiles and deletes) are not news.
    if (fs::exists(c.source) && std::find(report.recompiled.begin(), report.recompiled.end(), rel) ==
                                    report.recompiled.end())
      report.recompiled.push_back(rel);
  }
  for (const auto& r : report.replayed) recompiled_sources.insert(r);
  std::set<std::string> known_sources, read_headers;
  bool unknown_headers = false;
  for (const auto& c : before.compiles) {
    known_sources.insert(rel_source(c, original));
    if (!c.headers) unknown_headers = true;
    else
      for (const auto& h : *c.headers) read_headers.insert(inside(h, original));
  }
  for (const auto& f : touched) {
    if (recompiled_sources.count(f)) continue;
    if (known_sources.count(f))
      fail("{} is changed by the diff and compiled by the build, but neither the patched build nor a replay of "
           "its original compile recompiled it",
           f);
    if (is_source(f)) {
      // An object beside it that the original build did not make was left by
      // the user's own build: the clean command did not reach it, so neither
      // did the wrapper.
      fs::path stale = original / fs::path(f).parent_path() / (fs::path(f).stem().string() + ".o");
      if (fs::exists(stale))
        fail("{} is changed by the diff but no compile of the original build used it: {} was left by an earlier "
             "build, which --clean ('{}') does not remove (a vendored dependency's clean target?)",
             f, inside(stale, original), options.clean);
      fail("{} is changed by the diff but no compile of the build uses it", f);
    }
    if (read_headers.count(f) || (unknown_headers && is_header(f))) continue;  // its readers were recompiled
    if (is_build_description(f)) report.build_files.push_back(f);
    else report.outside_build.push_back(f);
  }

  // 5. compare, extract, group by binary
  struct Piece {
    std::string unit;               // the source, relative to the tree, for messages
    std::string replaced_from;      // the original object, for the fidelity check
    fs::path patched_object;        // what the patch is cut from
    std::string file_symbol;        // the unit's STT_FILE name
    diff::ObjectDiff diff;          // as the project compiled both
    // The same pair compiled with -fno-ipa-ra: what tells callers that differ
    // only by register allocation around calls to changed callees.
    std::optional<diff::ObjectDiff> without_ipa_ra;
    std::vector<std::string> notes;
  };
  std::map<std::string, std::vector<Piece>> by_binary;  // relative output path -> pieces
  // The original compile of each recompiled translation unit: by source path
  // within the tree, and by object path when a source is compiled twice.
  // (Objects of compile-and-link commands live outside the trees.)
  auto original_compile = [&](const Compile& c) -> const Compile* {
    std::string rel = rel_source(c, patched);
    std::vector<const Compile*> candidates;
    for (const auto& o : before.compiles)
      if (rel_source(o, original) == rel) candidates.push_back(&o);
    if (candidates.size() > 1) {
      fs::path rel_object = fs::relative(c.object, patched).lexically_normal();
      std::erase_if(candidates, [&](const Compile* o) {
        return fs::relative(o->object, original).lexically_normal() != rel_object;
      });
    }
    if (candidates.size() != 1) return nullptr;
    return candidates[0];
  };
  for (const auto& c : after.compiles) {
    std::string rel = rel_source(c, patched);
    // A build's own probes compile files they delete again (a test of the
    // compiler, not part of any binary).
    if (!fs::exists(c.source) || !fs::exists(c.object)) continue;
    const Compile* before_compile = original_compile(c);
    if (!before_compile && known_sources.count(rel))
      fail("{}: compiled more than once in the original build, and none of those compiles wrote {}", rel,
           inside(c.object, patched));
    pairs.push_back({before_compile, c});
  }
  // A new source is compared with an object that defines nothing: all of it is new.
  fs::path empty_object = root / "empty.o";
  for (const auto& [before_compile, c] : pairs) {
    std::string rel = rel_source(c, patched);
    if (!before_compile && !fs::exists(empty_object)) {
      std::string compiler = c.compiler.empty() ? "cc" : c.compiler;
      run(quote(compiler) + " -c -x c /dev/null -o " + quote(empty_object.string()), root, root / "empty.log",
          options.verbose);
    }
    fs::path old_object = before_compile ? before_compile->object : empty_object;
    auto old_elf = elf::ElfFile::open(old_object.string());
    auto new_elf = elf::ElfFile::open(c.object.string());
    auto diff = diff::diff_objects(old_elf, new_elf);
    if (!diff.errors.empty()) {
      std::string all;
      for (const auto& e : diff.errors) all += (all.empty() ? "" : "\n  ") + e;
      fail("{}: {}", rel, all);
    }
    for (const auto& f : diff.forgiven) report.forgiven.push_back(fmt::format("{}: {}: {}", rel, f.symbol, f.reason));
    if (diff.changes.empty()) continue;
    // A changed function that calls another may differ only because gcc let it
    // keep values in registers the old callee never wrote: compile the unit
    // both ways again without that (-fno-ipa-ra) to find out.
    std::optional<diff::ObjectDiff> without_ipa_ra;
    std::vector<std::string> notes;
    if (before_compile && diff::calls_changed_functions(diff)) {
      fs::path side_log = root / "no-ipa-ra.txt";
      auto old_side = compile_without_ipa_ra(*before_compile, root / "no-ipa-ra", side_log, options.verbose);
      auto new_side = old_side ? compile_without_ipa_ra(c, root / "no-ipa-ra", side_log, options.verbose) : std::nullopt;
      if (old_side && new_side)
        without_ipa_ra = diff::diff_objects(elf::ElfFile::open(old_side->string()), elf::ElfFile::open(new_side->string()));
      else
        notes.push_back(fmt::format("{}: could not be compiled again with -fno-ipa-ra added (see {}); functions "
                                    "that call changed functions are replaced whatever made them differ",
                                    rel, side_log.string()));
    }
    std::vector<std::string> outputs;
    if (before_compile) {
      outputs = binaries_of(old_object, before.links, original);
      if (outputs.empty() && before.links.size() == 1)
        outputs.push_back(fs::relative(before.links[0].output, original).string());
    } else {
      // Only the patched build links a new source; the binary that runs is the
      // same path in the original tree.
      outputs = binaries_of(c.object, after.links, patched);
      std::erase_if(outputs, [&](const std::string& out) { return !fs::exists(original / out); });
    }
    if (outputs.empty())
      fail("{}: cannot tell which binary its object is linked into{}", rel,
           before_compile ? "" : " (a new source: no link of the patched build that is also in the original uses it)");
    for (const auto& out : outputs)
      by_binary[out].push_back({rel, old_object.string(), c.object, first_file_symbol(new_elf), diff, without_ipa_ra, notes});
  }
  if (by_binary.empty()) {
    std::string outside;
    for (const auto& f : report.outside_build) outside += (outside.empty() ? "" : ", ") + f;
    fail("the diff changes no function of any object (nothing to patch){}",
         outside.empty() ? "" : "; outside the build: " + outside);
  }

  // 6. per binary: keep what differs only by register allocation, extract,
  // fidelity, then pack against the running binary
  fs::create_directories(options.output);
  for (const auto& [binary_rel, pieces] : by_binary) {
    std::string running = options.against.empty() ? (source / binary_rel).string() : options.against;
    if (!fs::exists(running)) fail("{}: the binary to patch does not exist (give it with --against)", running);
    auto running_elf = elf::ElfFile::open(running);
    // Callers that differ only by register allocation but must be replaced all
    // the same, per piece: pack could not read the old register use of a
    // callee they relied on, so no thunk would cover them.
    std::vector<std::set<std::string>> must_replace(pieces.size());
    std::vector<std::string> put_back;
    for (;;) {
      BuiltPatch built;
      built.binary = running;
      std::vector<ReplaceRequest> replace;
      std::vector<BindRequest> bind;
      std::vector<fs::path> objects;
      std::set<std::string> replaced_spellings;
      std::vector<std::vector<diff::KeptCaller>> kept(pieces.size());
      std::vector<std::map<std::string, std::string>> spelling_of(pieces.size());  // original name -> spelling
      for (size_t i = 0; i < pieces.size(); ++i) {
        const auto& piece = pieces[i];
        auto diff = piece.diff;
        if (piece.without_ipa_ra)
          kept[i] = diff::keep_register_allocation_only(diff, *piece.without_ipa_ra, must_replace[i]);
        auto patched_elf = elf::ElfFile::open(piece.patched_object.string());
        auto extracted = extract::extract_patch(patched_elf, diff, piece.file_symbol);
        std::vector<std::string> names;
        for (const auto& r : extracted.replacements) {
          names.push_back(r.symbol);
          spelling_of[i][r.symbol] = r.spelling;
          // An inline or template function (COMDAT) comes from every unit that
          // uses it; the first unit's copy replaces it.
          if (!replaced_spellings.insert(r.spelling).second) continue;
          replace.push_back({r.spelling, r.new_symbol});
          built.changed.push_back(r.symbol);
        }
        // A kept caller is kept because of what the original rebuild's copy
        // does: it must be the copy that runs.
        for (const auto& k : kept[i]) names.push_back(k.change.original);
        auto original_elf = elf::ElfFile::open(piece.replaced_from);
        auto mismatches = fidelity::check_functions(original_elf, running_elf, names);
        if (!mismatches.empty())
          fail("{}: {} in the original rebuild is not the code that runs: +{:#x}: {} (different compiler, flags or "
               "sources?)",
               running, mismatches[0].function, mismatches[0].offset, mismatches[0].what);
        for (const auto& b : extracted.bindings)
          bind.push_back({b.local, b.file.empty() ? b.symbol : b.file + ":" + b.symbol});
        for (const auto& why : extracted.included) built.reasons.push_back(why);
        for (const auto& n : piece.notes) built.notes.push_back(n);
        fs::path o = root / fmt::format("extract-{}.o", i);
        std::ofstream(o, std::ios::binary)
            .write(reinterpret_cast<const char*>(extracted.object.data()),
                   static_cast<std::streamsize>(extracted.object.size()));
        objects.push_back(o);
      }
      fs::path merged = objects[0];
      if (objects.size() > 1) {
        merged = root / "merged.o";
        std::string cmd = "ld -r -o " + quote(merged.string());
        for (const auto& o : objects) cmd += " " + quote(o.string());
        run(cmd, root, root / "ld.log", options.verbose);
      }
      PackOptions pack_options;
      pack_options.target = running;
      pack_options.object = fs::path(binary_rel).filename().string() + " (built from the diff)";
      pack_options.name = fs::path(options.diffs.front()).stem().string();
      auto packed = pack_requests(pack_options, read_whole_file(merged.string()), replace, bind);

      // A kept caller relied on its callees' old register use: only a callee
      // whose old code pack could read completely has a thunk that keeps it.
      bool again = false;
      for (size_t i = 0; i < pieces.size(); ++i)
        for (const auto& k : kept[i])
          for (const auto& callee : k.callees) {
            auto unknown = packed.unknown_contracts.find(spelling_of[i][callee]);
            if (unknown == packed.unknown_contracts.end() || !must_replace[i].insert(k.change.original).second)
              continue;
            put_back.push_back(fmt::format("{}: {} is replaced although it differs only by interprocedural register "
                                           "allocation around calls to {}: the registers the old {} writes cannot "
                                           "be read from its code ({})",
                                           pieces[i].unit, k.change.original, joined(k.callees), callee,
                                           unknown->second));
            again = true;
          }
      if (again) continue;

      std::map<std::string, redirect::RegisterSet> preserve;  // by spelling
      for (const auto& r : packed.patch.replacements) preserve[r.spelling] = r.preserve;
      for (size_t i = 0; i < pieces.size(); ++i)
        for (const auto& k : kept[i]) {
          std::string how;
          for (const auto& callee : k.callees) {
            auto p = preserve.find(spelling_of[i][callee]);
            how += "; " + callee;
            if (p != preserve.end() && p->second != 0)
              how += fmt::format(" is reached through a register-preserving thunk ({})",
                                 redirect::describe_registers(p->second));
            else
              how += " writes no register its old code left alone";
          }
          report.forgiven.push_back(fmt::format("{}: {}: kept; differs only by interprocedural register allocation "
                                                "around calls to {}{}",
                                                pieces[i].unit, k.change.original, joined(k.callees), how));
        }
      built.notes.insert(built.notes.end(), put_back.begin(), put_back.end());
      built.notes.insert(built.notes.end(), packed.notes.begin(), packed.notes.end());
      built.path = (fs::path(options.output) / (fs::path(binary_rel).filename().string() + ".sut")).string();
      patchfile::write_file(packed.patch, built.path);
      report.patches.push_back(std::move(built));
      break;
    }
  }
  return report;
}

}  // namespace suture::build
