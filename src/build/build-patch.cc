// suture build, the driver:
//   1. original build: a copy of the source tree, cleaned, built through the
//      compiler wrapper (every object with one section per function, every
//      compile and link logged); cached, keyed by the tree's path and build
//      command, and reused while the tree's files are unchanged
//   2. patched build: a copy of the original build (timestamps kept, so the
//      project's own build rebuilds only what the diff affects), the diffs
//      applied with patch -p1, built again through the wrapper
//   3. accounting: every file the diff touches is compiled into an object that
//      is compared, or reported as outside the build; a touched source the build
//      did not recompile is an error, never a silent "nothing changed"
//   4. per recompiled object: compare with its original (object-diff), extract
//      what changed (extract), and group by the binary it links into
//   5. per binary: fidelity check of every replaced function against the binary
//      that runs, then pack against it (build-id of the running binary)
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
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "build/diff/object-diff.h"
#include "build/extract/extract-patch.h"
#include "build/fidelity/fidelity-check.h"
#include "build/pack.h"
#include "common/error.h"
#include "common/fnv1a.h"
#include "common/read-file.h"
#include "elf/elf-file.h"

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
  fs::path source, object;
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
      log.compiles.push_back({j.at("source").get<std::string>(), j.at("object").get<std::string>()});
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
  fs::path root = cache_root(options) / fmt::format("{:016x}", fnv1a(source.string() + "\n" + options.build));
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
  std::string print = fingerprint(source);
  std::string stamped;
  if (std::ifstream in(stamp); in) std::getline(in, stamped);
  if (stamped == print && fs::exists(original_log)) {
    report.original_cached = true;
  } else {
    fs::remove(stamp);
    fs::remove(original_log);
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

  // 3. accounting
  std::set<std::string> recompiled_sources;
  for (const auto& c : after.compiles) {
    auto rel = fs::relative(c.source, patched).lexically_normal().string();
    recompiled_sources.insert(rel);
    report.recompiled.push_back(rel);
  }
  std::set<std::string> known_sources;
  for (const auto& c : before.compiles) known_sources.insert(fs::relative(c.source, original).lexically_normal().string());
  for (const auto& f : touched) {
    if (recompiled_sources.count(f)) continue;
    if (known_sources.count(f))
      fail("{} is changed by the diff and compiled by the build, but the patched build did not recompile it", f);
    if (is_source(f)) fail("{} is changed by the diff but no compile of the build uses it", f);
    bool header = fs::path(f).extension() == ".h" || fs::path(f).extension() == ".hpp";
    if (header && after.compiles.empty())
      fail("{} is changed by the diff but the patched build recompiled nothing (does the build track header "
           "dependencies?)",
           f);
    if (!header) report.outside_build.push_back(f);
  }

  // 4. compare, extract, group by binary
  struct Piece {
    fs::path original_object;
    std::string replaced_from;  // the original object, for the fidelity check
    extract::Extracted extracted;
  };
  std::map<std::string, std::vector<Piece>> by_binary;  // relative output path -> pieces
  // The original compile of each recompiled translation unit: by source path
  // within the tree, and by object path when a source is compiled twice.
  // (Objects of compile-and-link commands live outside the trees.)
  auto original_compile = [&](const Compile& c) -> const Compile* {
    fs::path rel_source = fs::relative(c.source, patched).lexically_normal();
    std::vector<const Compile*> candidates;
    for (const auto& o : before.compiles)
      if (fs::relative(o.source, original).lexically_normal() == rel_source) candidates.push_back(&o);
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
    std::string rel = fs::relative(c.source, patched).lexically_normal().string();
    // A build's own probes compile files they delete again (a test of the
    // compiler, not part of any binary).
    if (!fs::exists(c.source) || !fs::exists(c.object)) continue;
    const Compile* before_compile = original_compile(c);
    if (!before_compile)
      fail("{}: no single compile of it in the original build (new source files are not supported yet)", rel);
    fs::path old_object = before_compile->object;
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
    auto extracted = extract::extract_patch(new_elf, diff, first_file_symbol(new_elf));
    std::vector<std::string> outputs;
    for (const auto& l : before.links)
      for (const auto& in : l.inputs)
        if (fs::weakly_canonical(in) == fs::weakly_canonical(old_object))
          outputs.push_back(fs::relative(l.output, original).string());
    if (outputs.empty() && before.links.size() == 1) outputs.push_back(fs::relative(before.links[0].output, original).string());
    if (outputs.empty()) fail("{}: cannot tell which binary its object is linked into", rel);
    for (const auto& out : outputs) by_binary[out].push_back({old_object, old_object.string(), extracted});
  }
  if (by_binary.empty()) {
    std::string outside;
    for (const auto& f : report.outside_build) outside += (outside.empty() ? "" : ", ") + f;
    fail("the diff changes no function of any object (nothing to patch){}",
         outside.empty() ? "" : "; outside the build: " + outside);
  }

  // 5. per binary: fidelity, then pack against the running binary
  fs::create_directories(options.output);
  for (const auto& [binary_rel, pieces] : by_binary) {
    std::string running = options.against.empty() ? (source / binary_rel).string() : options.against;
    if (!fs::exists(running)) fail("{}: the binary to patch does not exist (give it with --against)", running);
    auto running_elf = elf::ElfFile::open(running);
    BuiltPatch built;
    built.binary = running;
    std::vector<ReplaceRequest> replace;
    std::vector<BindRequest> bind;
    std::vector<fs::path> objects;
    std::set<std::string> replaced_spellings;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const auto& piece = pieces[i];
      std::vector<std::string> names;
      for (const auto& r : piece.extracted.replacements) {
        names.push_back(r.symbol);
        // An inline or template function (COMDAT) comes from every unit that
        // uses it; the first unit's copy replaces it.
        if (!replaced_spellings.insert(r.spelling).second) continue;
        replace.push_back({r.spelling, r.new_symbol});
        built.changed.push_back(r.symbol);
      }
      auto original_elf = elf::ElfFile::open(piece.replaced_from);
      auto mismatches = fidelity::check_functions(original_elf, running_elf, names);
      if (!mismatches.empty())
        fail("{}: {} in the original rebuild is not the code that runs: +{:#x}: {} (different compiler, flags or "
             "sources?)",
             running, mismatches[0].function, mismatches[0].offset, mismatches[0].what);
      for (const auto& b : piece.extracted.bindings)
        bind.push_back({b.local, b.file.empty() ? b.symbol : b.file + ":" + b.symbol});
      for (const auto& why : piece.extracted.included) built.reasons.push_back(why);
      fs::path o = root / fmt::format("extract-{}.o", i);
      std::ofstream(o, std::ios::binary)
          .write(reinterpret_cast<const char*>(piece.extracted.object.data()),
                 static_cast<std::streamsize>(piece.extracted.object.size()));
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
    built.notes = packed.notes;
    built.path = (fs::path(options.output) / (fs::path(binary_rel).filename().string() + ".sut")).string();
    patchfile::write_file(packed.patch, built.path);
    report.patches.push_back(std::move(built));
  }
  return report;
}

}  // namespace suture::build
