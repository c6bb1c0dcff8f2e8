// Every step that changes the target registers its undo as soon as it succeeds.
// If the operation does not reach commit() — an error, a refusal, SIGINT, the
// target dying — the destructor runs the undos newest first. An undo that fails
// is reported and the rest still run: we put back as much as can be put back.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"
#include "common/interrupt.h"

namespace suture::engine {

class UndoLog {
 public:
  UndoLog() = default;
  UndoLog(const UndoLog&) = delete;
  UndoLog& operator=(const UndoLog&) = delete;
  ~UndoLog() { rollback(); }

  void push(std::string what, std::function<void()> undo) { steps_.push_back({std::move(what), std::move(undo)}); }

  // The operation succeeded: forget the undos.
  void commit() { steps_.clear(); }

  // Runs the undos newest first; returns the descriptions of the ones that failed.
  std::vector<std::string> rollback() noexcept {
    InterruptShield shield;
    std::vector<std::string> failures;
    while (!steps_.empty()) {
      auto step = std::move(steps_.back());
      steps_.pop_back();
      try {
        step.undo();
      } catch (const TargetGone&) {
        // Nothing is left to put back in a process that is gone.
        steps_.clear();
        break;
      } catch (const std::exception& e) {
        failures.push_back(fmt::format("{}: {}", step.what, e.what()));
      } catch (...) {
        failures.push_back(step.what);
      }
    }
    for (const auto& f : failures) fmt::print(stderr, "suture: warning: undo failed: {}\n", f);
    return failures;
  }

  bool empty() const { return steps_.empty(); }

 private:
  struct Step {
    std::string what;
    std::function<void()> undo;
  };
  std::vector<Step> steps_;
};

}  // namespace suture::engine
