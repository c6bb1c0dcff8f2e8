// The objects of a live process, from the dynamic linker's list: order, bias,
// build-ids as readelf sees them, and glibc's TLS placement of a library.
#include "process/loaded-objects.h"

#include <climits>
#include <cstdio>
#include <cstdlib>

#include <gtest/gtest.h>

#include "common/error.h"
#include "elf/elf-file.h"
#include "fixture-process.h"
#include "process/tracee.h"

namespace suture::process {
namespace {

using testing::FixtureProcess;

std::string real_path(const char* path) {
  char buffer[PATH_MAX];
  return realpath(path, buffer) ? buffer : path;
}

std::string readelf_build_id(const std::string& path) {
  std::string command = "readelf -n '" + path + "' 2>/dev/null";
  FILE* out = popen(command.c_str(), "r");
  if (!out) return {};
  char line[512];
  std::string id;
  while (fgets(line, sizeof line, out)) {
    std::string text = line;
    auto at = text.find("Build ID: ");
    if (at != std::string::npos) {
      id = text.substr(at + 10);
      while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
    }
  }
  pclose(out);
  return id;
}

uint64_t symbol_value(const std::string& path, const std::string& name) {
  auto file = elf::ElfFile::open(path);
  for (const auto& s : file.dynamic_symbols())
    if (s.name == name && s.defined()) return s.value;
  for (const auto& s : file.symbols())
    if (s.name == name && s.defined()) return s.value;
  throw Error(path + ": no symbol " + name);
}

const LoadedObject* find_named(const std::vector<LoadedObject>& objects, const std::string& basename_prefix) {
  for (const auto& o : objects) {
    std::string name = o.path.substr(o.path.rfind('/') + 1);
    if (name.rfind(basename_prefix, 0) == 0) return &o;
  }
  return nullptr;
}

void expect_consistent(const std::vector<LoadedObject>& objects) {
  for (size_t i = 0; i < objects.size(); ++i) {
    const auto& o = objects[i];
    EXPECT_EQ(o.load_order, i);
    for (const auto& m : o.mappings) {
      EXPECT_TRUE(o.span.contains(m.start)) << o.path;
      EXPECT_LE(m.end, o.span.end()) << o.path;
    }
  }
}

TEST(LoadedObjects, FollowsTheDynamicLinkersList) {
  FixtureProcess fixture(FIXTURE_PATH);
  Memory memory(fixture.pid());
  auto started = std::chrono::steady_clock::now();
  auto objects = loaded_objects(fixture.pid(), memory);
  auto took = std::chrono::steady_clock::now() - started;
  std::printf("[ info ] loaded_objects of %zu objects: %.2f ms\n", objects.size(),
              static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(took).count()) / 1e3);
  ASSERT_GE(objects.size(), 4u);
  expect_consistent(objects);

  const auto& exe = objects[0];
  EXPECT_TRUE(exe.is_main_executable);
  EXPECT_EQ(exe.path, real_path(FIXTURE_PATH));
  EXPECT_FALSE(exe.link_map.is_null());
  EXPECT_EQ(exe.build_id, readelf_build_id(FIXTURE_PATH));
  EXPECT_FALSE(exe.build_id.empty());
  // Runtime address = bias + st_value.
  EXPECT_EQ((exe.bias + static_cast<int64_t>(symbol_value(FIXTURE_PATH, "fixture_add"))).value(),
            fixture.value("add"));
  EXPECT_TRUE(exe.span.contains(RemoteAddr(fixture.value("add"))));
  for (size_t i = 1; i < objects.size(); ++i) EXPECT_FALSE(objects[i].is_main_executable);

  const LoadedObject* libc = find_named(objects, "libc.so");
  ASSERT_NE(libc, nullptr);
  EXPECT_FALSE(libc->link_map.is_null());
  EXPECT_EQ(libc->build_id, readelf_build_id(libc->path));
  EXPECT_EQ(libc->build_id.size(), 40u);
  bool libc_exec = false;
  for (const auto& m : libc->mappings) libc_exec |= m.exec;
  EXPECT_TRUE(libc_exec);
  EXPECT_GT(libc->tls_modid, 0u) << "libc has TLS (errno)";

  const LoadedObject* lib = find_named(objects, "libprocess-tls-fixture");
  ASSERT_NE(lib, nullptr);
  EXPECT_EQ(lib->path, real_path(TLS_LIBRARY_PATH));
  // Module ids count from 1 in load order among objects with TLS (the
  // executable has none here, so our library, loaded before libc, is first).
  EXPECT_GT(lib->tls_modid, 0u);
  EXPECT_LT(lib->tls_modid, libc->tls_modid);
  ASSERT_TRUE(lib->tls_offset.has_value()) << "a DT_NEEDED library gets static TLS";

  int vdsos = 0;
  for (const auto& o : objects) {
    if (!o.is_vdso) continue;
    ++vdsos;
    ASSERT_EQ(o.mappings.size(), 1u);
    EXPECT_EQ(o.mappings[0].path, "[vdso]");
    EXPECT_FALSE(o.build_id.empty());  // read from memory: there is no file
  }
  EXPECT_EQ(vdsos, 1);
  EXPECT_NE(find_named(objects, "ld-linux"), nullptr);

  // openable_path() names the very file that is mapped.
  std::string openable = openable_path(fixture.pid(), *libc);
  EXPECT_EQ(openable.rfind(fmt::format("/proc/{}/map_files/", fixture.pid()), 0), 0u) << openable;
  EXPECT_EQ(elf::ElfFile::open(openable).build_id(), libc->build_id);
}

TEST(LoadedObjects, StaticTlsOffsetLocatesTheVariable) {
  FixtureProcess fixture(FIXTURE_PATH);
  Tracee tracee(fixture.pid());
  auto objects = loaded_objects(fixture.pid(), tracee.memory());
  const LoadedObject* lib = find_named(objects, "libprocess-tls-fixture");
  ASSERT_NE(lib, nullptr);
  ASSERT_TRUE(lib->tls_offset.has_value());
  uint64_t st_value = symbol_value(TLS_LIBRARY_PATH, "fixture_tls_value");
  tracee.hold_all();
  uint64_t fs_base = tracee.registers(fixture.pid()).fs_base;  // the main thread printed its &var
  tracee.release_all();
  EXPECT_EQ(fs_base - static_cast<uint64_t>(*lib->tls_offset) + st_value, fixture.value("tls"));
}

TEST(LoadedObjects, NonPieExecutableHasBiasZero) {
  FixtureProcess fixture(NOPIE_FIXTURE_PATH);
  Memory memory(fixture.pid());
  auto objects = loaded_objects(fixture.pid(), memory);
  ASSERT_FALSE(objects.empty());
  EXPECT_EQ(objects[0].path, real_path(NOPIE_FIXTURE_PATH));
  EXPECT_EQ(objects[0].bias.value(), 0u);
  EXPECT_EQ(symbol_value(NOPIE_FIXTURE_PATH, "fixture_add"), fixture.value("add"));
  EXPECT_TRUE(objects[0].span.contains(RemoteAddr(fixture.value("add"))));
  EXPECT_NE(find_named(objects, "libc.so"), nullptr);
  expect_consistent(objects);
}

TEST(LoadedObjects, StaticExecutableFallsBackToTheMaps) {
  FixtureProcess fixture(STATIC_FIXTURE_PATH);
  Memory memory(fixture.pid());
  auto objects = loaded_objects(fixture.pid(), memory);
  ASSERT_GE(objects.size(), 1u);
  EXPECT_TRUE(objects[0].is_main_executable);
  EXPECT_EQ(objects[0].path, real_path(STATIC_FIXTURE_PATH));
  EXPECT_EQ(objects[0].build_id, readelf_build_id(STATIC_FIXTURE_PATH));
  EXPECT_TRUE(objects[0].link_map.is_null());
  bool vdso = false;
  for (const auto& o : objects) vdso |= o.is_vdso;
  EXPECT_TRUE(vdso);
  expect_consistent(objects);
}

TEST(LoadedObjects, ANonexistentProcessIsTargetGone) {
  auto fixture = std::make_unique<FixtureProcess>(FIXTURE_PATH);
  Memory memory(fixture->pid());
  kill(fixture->pid(), SIGKILL);
  fixture->reap();
  EXPECT_THROW(loaded_objects(fixture->pid(), memory), TargetGone);
}

}  // namespace
}  // namespace suture::process
