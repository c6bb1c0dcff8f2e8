// The three verbs on a live process. Each is a transaction over the stages below
// it: every change to the target is registered in an undo log as it succeeds and
// undone, newest first, on any failure, refusal or interruption, so the target is
// left either fully changed or exactly as it was.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/remote-addr.h"
#include "consistency/live-switch.h"
#include "engine/patch-record.h"
#include "engine/safe-point-transition.h"
#include "patchfile/patch-file.h"

namespace suture::engine {

struct PatchInput {
  std::string origin;            // the file it came from
  patchfile::Patch patch;
  bool from_directory = false;   // patches from a directory that match nothing are skipped, not errors
};

// Reads patch files and directories of patch files (every file in a directory
// that starts with the patch magic). Throws Error naming the bad file.
std::vector<PatchInput> load_patch_inputs(const std::vector<std::string>& paths);

// How the switch to new code is made consistent (see consistency/).
enum class Mode {
  stop_the_world,  // every thread held at once, none inside a function being replaced
  zero_suspend,    // entries switched while threads run; each held alone, briefly, if at all
};

struct ApplyOptions {
  std::chrono::milliseconds timeout{10'000};  // waiting for threads to leave busy functions
  Mode mode = Mode::stop_the_world;
  // Zero-suspend only: each thread switches when it next enters this function
  // (see safe-point-transition.h); empty: all at once.
  std::string safe_point;
};

struct SkippedPatch {
  std::string origin;
  std::string reason;
};

struct ApplyReport {
  std::vector<PatchRecord> applied;
  std::vector<SkippedPatch> skipped;
  std::chrono::nanoseconds pause{0};   // the longest time any thread was held
  std::chrono::nanoseconds total{0};   // wall time of the whole operation
  int attempts = 0;                    // consistency checks made
  size_t threads = 0;                  // threads held at the switch (of the process, in zero-suspend)
  Mode mode = Mode::stop_the_world;
  consistency::LiveSwitchReport live;  // zero-suspend: what the switch did
  std::optional<TransitionReport> transition;  // with a safe point
};

// Applies every patch that matches an object of the process, all or nothing.
ApplyReport apply(pid_t pid, const std::vector<PatchInput>& patches, const ApplyOptions& options);

struct RevertOptions {
  std::chrono::milliseconds timeout{10'000};
  Mode mode = Mode::stop_the_world;
  std::string safe_point;  // zero-suspend: each thread goes back when it next enters this function
};

struct RevertReport {
  std::vector<PatchRecord> reverted;
  std::chrono::nanoseconds pause{0};
  std::chrono::nanoseconds total{0};
  int attempts = 0;
  size_t threads = 0;
  Mode mode = Mode::stop_the_world;
  consistency::LiveSwitchReport live;
  std::optional<TransitionReport> transition;
};

// Reverts the patches with these ids (unique prefixes accepted), or all when empty,
// newest first. Refuses to revert a patch a newer, remaining one depends on.
RevertReport revert(pid_t pid, const std::vector<std::string>& ids, const RevertOptions& options);

struct StatusReport {
  std::vector<PatchRecord> records;   // oldest first
  std::vector<std::string> problems;  // unreadable records
};

// Reads the records from the target's memory; does not stop the process.
StatusReport status(pid_t pid);

}  // namespace suture::engine
