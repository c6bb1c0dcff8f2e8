// suture-cc: the compiler wrapper `suture build` puts in front of a project's
// compiler, so that the build leaves objects fit for per-function comparison
// and a log of which source went into which object and which objects into
// which binary.
//
// Usage, by what the project lets us replace:
//   make CC="suture-cc gcc" CXX="suture-cc g++"          the first word is the compiler
//   make CC="suture-cc ccache gcc"                       ...behind a launcher
//   CC=suture-cc SUTURE_REAL_CC=gcc CXX=suture-c++ SUTURE_REAL_CXX=g++ make
//   suture-cc --make-shims DIR; PATH=DIR:$PATH make      links named cc, gcc, g++, clang,
//                                                        ccache, x86_64-linux-gnu-gcc-12...
// Environment: SUTURE_BUILD_LOG (absolute; without it the wrapper only adds its
// flags), SUTURE_OBJDIR (absolute; where objects of compile-and-link commands
// go; default: suture-objects beside the log).
//
// What it does, per invocation:
//   compile (-c)           add -ffunction-sections -fdata-sections if missing (and -MD -MF SIDE when the
//                          compile writes no dependency file), run, record each object and what it read
//   compile and link       compile each source to a kept object, link those, record all (split-compile.h)
//   link                   run unchanged, record output and inputs
//   anything else          exec the compiler unchanged (-E, -S, -M, --version, probes to stdin...)
// The compiler's stderr and exit status are passed through untouched; the
// wrapper execs rather than forks whenever no record follows.
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>

#include <fmt/format.h>

#include "build/wrapper/build-log.h"
#include "build/wrapper/command-line.h"
#include "build/wrapper/dependency-file.h"
#include "build/wrapper/real-compiler.h"
#include "build/wrapper/shims.h"
#include "build/wrapper/spawn.h"
#include "build/wrapper/split-compile.h"
#include "common/error.h"
#include "common/fnv1a.h"

extern char** environ;

namespace suture::build::wrapper {
namespace {

namespace fs = std::filesystem;

constexpr const char* nested_variable = "SUTURE_CC_ACTIVE";

// Everything one invocation works with; read once from the process.
struct Context {
  Environment env;
  std::vector<std::string> child_env;  // ours, plus the mark that a wrapper is running
  std::string log;                     // empty: add flags, record nothing
  std::string object_dir;
};

std::string variable(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

std::string absolute_variable(const char* name) {
  auto value = variable(name);
  if (!value.empty() && value[0] != '/')
    fail("suture-cc: {}={}: must be an absolute path (the build runs in many directories)", name, value);
  return value;
}

Context read_context() {
  Context ctx;
  ctx.env.path = std::getenv("PATH") ? variable("PATH") : "/usr/local/bin:/usr/bin:/bin";
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) fail("suture-cc: cannot read the current directory: {}", errno_text(errno));
  ctx.env.cwd = buf;
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n < 0) fail("suture-cc: cannot read /proc/self/exe: {}", errno_text(errno));
  ctx.env.own_exe.assign(buf, static_cast<size_t>(n));
  ctx.env.real_cc = variable("SUTURE_REAL_CC");
  ctx.env.real_cxx = variable("SUTURE_REAL_CXX");
  ctx.env.nested = !variable(nested_variable).empty();

  std::string mark = std::string(nested_variable) + "=";
  for (char** e = environ; *e; ++e)
    if (!std::string_view(*e).starts_with(mark)) ctx.child_env.emplace_back(*e);
  ctx.child_env.push_back(mark + "1");

  ctx.log = absolute_variable("SUTURE_BUILD_LOG");
  ctx.object_dir = absolute_variable("SUTURE_OBJDIR");
  if (ctx.object_dir.empty() && !ctx.log.empty())
    ctx.object_dir = (fs::path(ctx.log).parent_path() / "suture-objects").string();
  return ctx;
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool discarded(const std::optional<std::string>& output) {
  return output && (*output == "/dev/null" || *output == "-");
}

LinkRecord link_record(const Context& ctx, const Invocation& inv, const std::vector<std::string>& link_args,
                       const std::vector<std::string>& command) {
  auto line = parse_command_line(link_args);
  LinkRecord record{ctx.env.cwd, inv.compiler, inv.launcher, inv.args, command, link_output(line, ctx.env.cwd),
                    {},          line.libraries, now()};
  for (const auto& input : line.inputs) record.inputs.push_back(absolute_path(input, ctx.env.cwd));
  return record;
}

// The compiler's environment as the log keeps it: without the variables that
// tell a wrapper where to log (a replay must not write into the original log).
std::vector<std::string> recorded_env(const Context& ctx) {
  std::vector<std::string> env;
  for (const auto& e : ctx.child_env)
    if (!e.starts_with("SUTURE_BUILD_LOG=") && !e.starts_with("SUTURE_OBJDIR=")) env.push_back(e);
  return env;
}

// A compile that asks for no dependency file gets one on the side, in the
// wrapper's object directory, named after the object it belongs to.
std::string side_dependency_file(const Context& ctx, const std::string& object) {
  auto dir = fs::path(ctx.object_dir) / "deps";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("suture-cc: {}: cannot create: {}", dir.string(), ec.message());
  return (dir / fmt::format("{:016x}-{}.d", fnv1a(object), getpid())).string();
}

// What the compile of SOURCE read: from our side file (removed after) or the
// project's own dependency file (left for the project).
std::optional<std::vector<std::string>> read_headers(const std::string& side, const std::optional<std::string>& own,
                                                     const std::string& source, const std::string& cwd) {
  if (!side.empty()) {
    auto headers = headers_from_file(side, source, cwd);
    std::error_code ec;
    fs::remove(side, ec);
    return headers;
  }
  if (own) return headers_from_file(*own, source, cwd);
  return std::nullopt;
}

[[noreturn]] void compile(const Context& ctx, const Invocation& inv, const CommandLine& line) {
  auto added = flags_to_add(line);
  auto args = concat(inv.args, added);
  if (ctx.log.empty() || discarded(line.output)) exec_command(inv.command(args), ctx.child_env);

  auto objects = objects_of(line, ctx.env.cwd);
  // One -MF names one file: with several sources only the project's own
  // dependency files (one per source) can tell; else the headers stay unknown.
  std::string side;
  if (!line.dependency_file && line.sources.size() == 1) {
    side = side_dependency_file(ctx, objects[0]);
    args = concat(args, {"-MD", "-MF", side});
  }
  auto command = inv.command(args);
  int status = run_command(command, ctx.child_env);
  if (!succeeded(status)) exit_like(status);
  std::vector<std::string> lines;
  for (size_t i = 0; i < line.sources.size(); ++i) {
    const auto& source = line.sources[i];
    auto own = own_dependency_file(line, source.path);
    if (line.sources.size() > 1 && line.dependency_output) own.reset();  // one -MF, several sources: unknowable
    CompileRecord record{ctx.env.cwd, inv.compiler, inv.launcher, inv.args, command, added,
                         absolute_path(source.path, ctx.env.cwd), objects[i], source.language, false, now()};
    record.env = recorded_env(ctx);
    record.headers = read_headers(side, own, source.path, ctx.env.cwd);
    lines.push_back(to_json_line(record));
  }
  append_lines(ctx.log, lines);
  exit_like(status);
}

[[noreturn]] void compile_and_link(const Context& ctx, const Invocation& inv, const std::vector<std::string>& args,
                                   const CommandLine& line) {
  if (ctx.log.empty() || discarded(line.output))
    exec_command(inv.command(concat(inv.args, flags_to_add(line))), ctx.child_env);

  auto plan = plan_split(args, line, ctx.object_dir, ctx.env.cwd);
  std::vector<std::string> lines;
  for (const auto& step : plan.compiles) {
    std::error_code ec;
    fs::create_directories(fs::path(step.object).parent_path(), ec);
    if (ec) fail("suture-cc: {}: cannot create: {}", fs::path(step.object).parent_path().string(), ec.message());
    auto step_args = step.args;
    std::string side;
    if (step.dependency_file.empty()) {
      side = side_dependency_file(ctx, step.object);
      step_args = concat(step_args, {"-MD", "-MF", side});
    }
    auto command = inv.command(step_args);
    int status = run_command(command, ctx.child_env);
    if (!succeeded(status)) exit_like(status);
    const auto& source = line.sources[step.source];
    CompileRecord record{ctx.env.cwd, inv.compiler, inv.launcher, inv.args, command,
                         flags_to_add(line), absolute_path(source.path, ctx.env.cwd),
                         step.object, source.language, true, now()};
    record.env = recorded_env(ctx);
    std::optional<std::string> own;
    if (!step.dependency_file.empty()) own = step.dependency_file;
    record.headers = read_headers(side, own, source.path, ctx.env.cwd);
    lines.push_back(to_json_line(record));
  }
  auto command = inv.command(plan.link_args);
  int status = run_command(command, ctx.child_env);
  if (!succeeded(status)) exit_like(status);
  lines.push_back(to_json_line(link_record(ctx, inv, plan.link_args, command)));
  append_lines(ctx.log, lines);
  exit_like(status);
}

[[noreturn]] void link(const Context& ctx, const Invocation& inv, const std::vector<std::string>& args,
                       const CommandLine& line) {
  auto command = inv.command(inv.args);
  if (ctx.log.empty() || discarded(line.output)) exec_command(command, ctx.child_env);
  int status = run_command(command, ctx.child_env);
  if (!succeeded(status)) exit_like(status);
  append_lines(ctx.log, {to_json_line(link_record(ctx, inv, args, command))});
  exit_like(status);
}

[[noreturn]] void run(const std::vector<std::string>& argv) {
  auto ctx = read_context();
  // Whom we stand in for: the real compiler, and a launcher in front of it.
  auto inv = resolve_invocation(argv, ctx.env);
  // A wrapper above us has already added its flags and will record: be the compiler.
  if (ctx.env.nested || inv.pass_through) exec_command(inv.command(inv.args), ctx.child_env);
  // Read the command as the driver will, through its response files.
  auto args = expand_response_files(inv.args, ctx.env.cwd);
  auto line = parse_command_line(args);
  switch (line.step) {
    case Step::compile: compile(ctx, inv, line);
    case Step::compile_and_link: compile_and_link(ctx, inv, args, line);
    case Step::link: link(ctx, inv, args, line);
    case Step::other: break;
  }
  // Preprocessing, assembly output, queries: nothing to add, nothing to record.
  exec_command(inv.command(inv.args), ctx.child_env);
}

}  // namespace
}  // namespace suture::build::wrapper

int main(int argc, char** argv) {
  using namespace suture::build::wrapper;
  std::vector<std::string> args(argv, argv + argc);
  try {
    if (args.size() == 3 && called_directly(args[0]) && args[1] == "--make-shims") {
      char self[PATH_MAX];
      ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
      if (n < 0) suture::fail("suture-cc: cannot read /proc/self/exe");
      auto path = std::getenv("PATH");
      make_shims(args[2], std::string(self, static_cast<size_t>(n)), shim_names(path ? path : ""));
      return 0;
    }
    run(args);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
