// The end-to-end check of the linker: patch objects are linked against this
// very process (its objects as dl_iterate_phdr lists them, their files parsed
// from disk), mapped with the protections the engine would use, and called.
// Their answer proves the arithmetic is what the CPU, libc's IFUNCs and ld.so's
// __tls_get_addr expect: a wrong sign in a TP offset or a slot off by eight does
// not survive a call.
#include <link.h>
#include <sys/mman.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "elf/elf-file.h"
#include "link/link-patch.h"
#include "link/target-symbols.h"

// What the patches reach in the "target" (this executable).
extern "C" {
__attribute__((used, noinline)) int run_target_function(int x) { return x * 10; }
__attribute__((used)) int run_target_value = 1000;
__attribute__((used)) thread_local int run_target_tls = 5;
__attribute__((used, noinline)) int run_target_check(int x) {
  if (x < 0) throw std::invalid_argument("negative");
  return x;
}

// libgcc's frame registry, as the engine calls it in a target.
void __register_frame_info_table(const void* tables, void* object);
void* __deregister_frame_info(const void* tables);
}

namespace suture::link {
namespace {

uint64_t thread_pointer() {
  uint64_t tp;
  asm("movq %%fs:0, %0" : "=r"(tp));  // the TCB's self pointer
  return tp;
}

// This process as a target: its objects in link_map order, with their files.
struct Self {
  std::vector<std::unique_ptr<elf::ElfFile>> files;
  std::vector<TargetObject> objects;
};

Self self() {
  struct Loaded {
    std::string name;
    uint64_t bias;
    uint64_t tls_modid;
  };
  std::vector<Loaded> loaded;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        static_cast<std::vector<Loaded>*>(out)->push_back({info->dlpi_name, info->dlpi_addr, info->dlpi_tls_modid});
        return 0;
      },
      &loaded);
  Self s;
  for (size_t i = 0; i < loaded.size(); ++i) {
    const std::string path = i == 0 ? "/proc/self/exe" : loaded[i].name;
    if (path.empty() || path.find('/') == std::string::npos) continue;  // the vDSO has no file
    s.files.push_back(std::make_unique<elf::ElfFile>(elf::ElfFile::open(path)));
    TargetObject object = {.path = path, .bias = RemoteAddr(loaded[i].bias), .file = s.files.back().get(),
                           .tls_modid = loaded[i].tls_modid};
    if (i == 0) {
      // The executable's block is in static TLS; its start, from a variable we
      // know both the address and the st_value of, gives l_tls_offset.
      for (const elf::Symbol& symbol : object.file->symbols())
        if (symbol.name == "run_target_tls") {
          const uint64_t block = reinterpret_cast<uint64_t>(&run_target_tls) - symbol.value;
          object.tls_offset = static_cast<int64_t>(thread_pointer() - block);
        }
    }
    s.objects.push_back(std::move(object));
  }
  return s;
}

// Space for a patch: near `near` (within rel32 reach) if asked and possible.
class Region {
 public:
  Region(uint64_t size, std::optional<uint64_t> near) : size_(size) {
    if (near) {
      for (uint64_t distance : {0x10000000ull, 0x20000000ull, 0x40000000ull}) {
        void* hint = reinterpret_cast<void*>((*near - distance) & ~uint64_t{0xfff});
        base_ = mmap(hint, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (base_ != MAP_FAILED) return;
      }
      base_ = nullptr;
      return;
    }
    base_ = mmap(nullptr, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base_ == MAP_FAILED) base_ = nullptr;
  }
  ~Region() {
    if (base_) munmap(base_, size_);
  }
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  bool ok() const { return base_ != nullptr; }
  uint64_t address() const { return reinterpret_cast<uint64_t>(base_); }

 private:
  void* base_ = nullptr;
  uint64_t size_ = 0;
};

// Writes the parts and sets their protections, as the engine does remotely.
void install(const LinkedPatch& patch) {
  auto put = [](RemoteAddr at, const std::vector<uint8_t>& bytes, int protection) {
    if (bytes.empty()) return;
    void* p = reinterpret_cast<void*>(at.value());
    ASSERT_EQ(mprotect(p, bytes.size(), PROT_READ | PROT_WRITE), 0);
    std::memcpy(p, bytes.data(), bytes.size());
    ASSERT_EQ(mprotect(p, bytes.size(), protection), 0);
  };
  put(patch.placement.text, patch.text, PROT_READ | PROT_EXEC);
  put(patch.placement.rodata, patch.rodata, PROT_READ);
  put(patch.placement.data, patch.data, PROT_READ | PROT_WRITE);
}

void link_and_run(const std::string& name, bool near) {
  SCOPED_TRACE(name);
  const Self process = self();
  ASSERT_FALSE(process.objects.empty());
  std::vector<RemoteAddr> resolvers;
  const TargetSymbols target(process.objects, [&](RemoteAddr resolver) {
    resolvers.push_back(resolver);
    // x86-64 IFUNC resolvers take no arguments; ld.so calls them the same way.
    auto resolve = reinterpret_cast<void* (*)()>(resolver.value());
    return RemoteAddr(reinterpret_cast<uint64_t>(resolve()));
  });

  const elf::ElfFile object = elf::ElfFile::open(SUTURE_PATCH_DIR "/" + name);
  const PartSizes sizes = measure(object);
  Region region(sizes.total(), near ? std::optional(process.objects[0].bias.value()) : std::nullopt);
  if (!region.ok()) GTEST_SKIP() << "no free space in rel32 reach of the executable";
  const Placement placement = {RemoteAddr(region.address()), RemoteAddr(region.address() + sizes.text),
                               RemoteAddr(region.address() + sizes.text + sizes.rodata)};
  const LinkedPatch patch = link_patch(object, target, 0, {}, placement);
  EXPECT_FALSE(resolvers.empty());  // strlen and memcpy are IFUNCs in glibc
  install(patch);

  using RunPatch = int (*)(char*, const char*);
  const auto run_patch = reinterpret_cast<RunPatch>(patch.defined.at("run_patch").value());

  // strlen("hello") * 10 + run_target_value + run_target_tls (after ++) + calls * 10000
  const int tls_before = run_target_tls;
  char out[16] = {};
  errno = 1;
  EXPECT_EQ(run_patch(out, "hello"), 50 + 1000 + (tls_before + 1) + 10000);
  EXPECT_STREQ(out, "hello");
  EXPECT_EQ(run_target_tls, tls_before + 1);
  EXPECT_EQ(errno, 0);

  // Another thread has its own run_target_tls, still 5.
  int result = 0;
  int thread_tls = 0;
  char thread_out[16] = {};
  std::thread([&] {
    result = run_patch(thread_out, "hi");
    thread_tls = run_target_tls;
  }).join();
  EXPECT_EQ(result, 20 + 1000 + 6 + 20000);
  EXPECT_EQ(thread_tls, 6);
  EXPECT_STREQ(thread_out, "hi");
}

TEST(LinkAndRun, PicGeneralDynamicTls) { link_and_run("run-pic.o", true); }
TEST(LinkAndRun, PicFarFromTheExecutable) { link_and_run("run-pic.o", false); }
TEST(LinkAndRun, PicInitialExecTls) { link_and_run("run-pic-ie.o", false); }
TEST(LinkAndRun, PicTlsDescriptors) { link_and_run("run-pic-desc.o", false); }
TEST(LinkAndRun, PieNearTheExecutable) { link_and_run("run-pie.o", true); }
TEST(LinkAndRun, LargeModel) { link_and_run("run-large.o", false); }
TEST(LinkAndRun, ClangPic) {
  if (!SUTURE_HAVE_CLANG_PATCHES) GTEST_SKIP() << "no clang";
  link_and_run("run-pic-clang.o", false);
}

// Exceptions through linked C++ code, with the linked .eh_frame registered the
// way the engine registers it in a target (a list of tables and a zeroed block).
TEST(LinkAndRun, ExceptionsCrossLinkedCode) {
  const Self process = self();
  const TargetSymbols target(process.objects, [](RemoteAddr resolver) {
    return RemoteAddr(reinterpret_cast<uint64_t>(reinterpret_cast<void* (*)()>(resolver.value())()));
  });
  const elf::ElfFile object = elf::ElfFile::open(SUTURE_PATCH_DIR "/run-throw.o");
  const PartSizes sizes = measure(object);
  Region region(sizes.total(), std::nullopt);
  ASSERT_TRUE(region.ok());
  const Placement placement = {RemoteAddr(region.address()), RemoteAddr(region.address() + sizes.text),
                               RemoteAddr(region.address() + sizes.text + sizes.rodata)};
  const LinkedPatch patch = link_patch(object, target, 0, {}, placement);
  ASSERT_FALSE(patch.eh_frame.empty());
  install(patch);
  const auto fn = [&](const char* name) {
    return reinterpret_cast<int (*)(int)>(patch.defined.at(name).value());
  };
  const auto passes = fn("_Z16run_throw_passesi");
  const auto throws = fn("_Z16run_throw_throwsi");
  const auto catches = fn("_Z17run_throw_catchesi");
  const auto cleanups = reinterpret_cast<int (*)()>(patch.defined.at("_Z18run_throw_cleanupsv").value());
  EXPECT_EQ(passes(1), 2);
  EXPECT_EQ(cleanups(), 1);

  // Unknown to the unwinder, patch code ends the search for a handler.
  EXPECT_DEATH(
      {
        try {
          passes(-1);
        } catch (const std::exception&) {
        }
      },
      "");

  auto* block = reinterpret_cast<uint64_t*>(patch.unwind_block.start.value());
  const uint64_t tables_at = patch.unwind_block.start.value() + 128;
  reinterpret_cast<uint64_t*>(tables_at)[0] = patch.eh_frame.start.value();
  reinterpret_cast<uint64_t*>(tables_at)[1] = 0;
  __register_frame_info_table(reinterpret_cast<const void*>(tables_at), block);

  std::string what;
  try {
    passes(-1);
  } catch (const std::invalid_argument& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "negative");
  EXPECT_EQ(cleanups(), 2);  // the guard in patch code ran while unwinding
  try {
    throws(101);
  } catch (const std::out_of_range& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "too big: 101");
  EXPECT_EQ(catches(-3), -1);
  EXPECT_EQ(catches(3), 3);
  EXPECT_EQ(__deregister_frame_info(reinterpret_cast<const void*>(tables_at)), block);
}

}  // namespace
}  // namespace suture::link
