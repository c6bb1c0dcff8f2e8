// The guardian repairs entries when suture cannot (repair_now() stands for
// suture dying: the guardian sees the same end-of-file). The entry used is
// nobody(), which no thread of the fixture ever calls, so its int3 is harmless.
#include "consistency/switch-guardian.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "fixture-process.h"
#include "process/memory.h"
#include "redirect/entry-jump.h"

namespace suture::consistency {
namespace {

using testing::FixtureProcess;
using namespace std::chrono_literals;

class SwitchGuardianTest : public ::testing::Test {
 protected:
  SwitchGuardianTest() : memory_(fixture_.pid()) {
    auto nobody = fixture_.function("nobody");
    auto code = memory_.read(nobody.start, nobody.size);
    auto jump = redirect::plan_entry_jump("nobody", nobody.start, code, fixture_.function("idle").start);
    change_ = {"nobody", jump.site, jump.original, jump.jump, jump.destination};
  }

  std::vector<uint8_t> entry() const { return memory_.read(change_.site, change_.before.size()); }
  void put(uint8_t first, const std::vector<uint8_t>& tail_from) {
    std::vector<uint8_t> bytes = tail_from;
    bytes[0] = first;
    memory_.write(change_.site, bytes);
  }
  // The guardian acts asynchronously: wait until the entry is `want`.
  bool becomes(const std::vector<uint8_t>& want) const {
    for (int i = 0; i < 500; ++i) {
      if (entry() == want) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  FixtureProcess fixture_;
  process::Memory memory_;
  EntryChange change_;
};

TEST_F(SwitchGuardianTest, FinishesAnEntryWhoseNewTailIsInPlace) {
  SwitchGuardian guardian(fixture_.pid(), {change_});
  put(0xcc, change_.after);
  guardian.repair_now();
  EXPECT_TRUE(becomes(change_.after));
}

TEST_F(SwitchGuardianTest, PutsBackAnEntryWhoseTailIsOld) {
  SwitchGuardian guardian(fixture_.pid(), {change_});
  put(0xcc, change_.before);
  guardian.repair_now();
  EXPECT_TRUE(becomes(change_.before));
}

TEST_F(SwitchGuardianTest, PutsBackAnEntryWithAHalfWrittenTail) {
  SwitchGuardian guardian(fixture_.pid(), {change_});
  std::vector<uint8_t> half = change_.before;
  half[0] = 0xcc;
  half[1] = change_.after[1];
  memory_.write(change_.site, half);
  guardian.repair_now();
  EXPECT_TRUE(becomes(change_.before));
}

TEST_F(SwitchGuardianTest, LeavesEverythingAloneWhenTheSwitchEnded) {
  {
    SwitchGuardian guardian(fixture_.pid(), {change_});
    put(0xcc, change_.before);
  }
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(entry()[0], 0xcc) << "the guardian acted although the switch ended";
  memory_.write(change_.site, change_.before);
  EXPECT_TRUE(fixture_.responds());
}

}  // namespace
}  // namespace suture::consistency
