#include "engine/undo-log.h"

#include <gtest/gtest.h>

#include <csignal>

#include "common/interrupt.h"

namespace suture::engine {
namespace {

TEST(UndoLog, RunsNewestFirstWhenNotCommitted) {
  std::vector<int> order;
  {
    UndoLog undo;
    undo.push("one", [&] { order.push_back(1); });
    undo.push("two", [&] { order.push_back(2); });
  }
  EXPECT_EQ(order, (std::vector<int>{2, 1}));
}

TEST(UndoLog, CommitForgets) {
  int runs = 0;
  {
    UndoLog undo;
    undo.push("one", [&] { ++runs; });
    undo.commit();
  }
  EXPECT_EQ(runs, 0);
}

TEST(UndoLog, AFailingUndoDoesNotStopTheOthers) {
  std::vector<int> order;
  UndoLog undo;
  undo.push("one", [&] { order.push_back(1); });
  undo.push("broken", [] { throw Error("cannot"); });
  undo.push("three", [&] { order.push_back(3); });
  auto failures = undo.rollback();
  EXPECT_EQ(order, (std::vector<int>{3, 1}));
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0], "broken: cannot");
}

TEST(UndoLog, StopsWhenTheTargetIsGone) {
  int runs = 0;
  UndoLog undo;
  undo.push("older", [&] { ++runs; });
  undo.push("gone", [] { throw TargetGone("process 1 exited"); });
  undo.rollback();
  EXPECT_EQ(runs, 0);
  EXPECT_TRUE(undo.empty());
}

TEST(UndoLog, UndoIsNotInterruptible) {
  // After SIGINT, check_interrupt() throws; inside an undo it must not.
  install_interrupt_handlers();
  bool completed = false;
  {
    UndoLog undo;
    undo.push("needs to finish", [&] {
      check_interrupt();
      completed = true;
    });
    std::raise(SIGINT);
    EXPECT_TRUE(interrupt_requested());
    EXPECT_THROW(check_interrupt(), Interrupted);
  }
  EXPECT_TRUE(completed);
  clear_interrupt();
}

}  // namespace
}  // namespace suture::engine
