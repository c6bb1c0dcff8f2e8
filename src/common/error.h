// Errors come in three tiers:
//  - bad input: an Error whose message names the culprit first
//    ("fix.sut: object: .text.f: relocation 3: symbol index out of range");
//  - trouble with the live process: TargetGone / Interrupted / Error, thrown after
//    the operation's undo log has put the target back as it was;
//  - broken invariants of our own: assert().
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>

namespace suture {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The target process (or one of the threads we were working with) went away.
class TargetGone : public Error {
 public:
  using Error::Error;
};

// The user asked us to stop (SIGINT/SIGTERM) while we worked on a live process.
class Interrupted : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

// Human text for errno values, without the thread-unsafe strerror().
std::string errno_text(int err);

}  // namespace suture
