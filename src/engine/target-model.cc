#include "engine/target-model.h"

#include <elf.h>

#include <algorithm>
#include <filesystem>

#include "common/error.h"

namespace suture::engine {
namespace {

std::string basename_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// The function of `file` whose [value, value + size) holds `offset`, if any.
const elf::Symbol* containing_function(const std::vector<elf::Symbol>& symbols, uint64_t offset) {
  const elf::Symbol* best = nullptr;
  for (const auto& s : symbols) {
    if (s.type != STT_FUNC || !s.defined()) continue;
    if (offset >= s.value && offset < s.value + std::max<uint64_t>(s.size, 1)) {
      if (!best || s.value > best->value) best = &s;
    }
  }
  return best;
}

}  // namespace

TargetModel::TargetModel(process::Tracee& tracee) : tracee_(tracee) {
  objects_ = process::loaded_objects(tracee.pid(), tracee.memory());
  std::vector<link::TargetObject> link_objects;
  for (const auto& object : objects_) {
    std::unique_ptr<elf::ElfFile> file, debug;
    if (!object.is_vdso) {
      try {
        file = std::make_unique<elf::ElfFile>(elf::ElfFile::open(process::openable_path(tracee.pid(), object)));
        if (!file->find_section(".symtab")) {
          if (auto debug_path = elf::find_debug_file(*file, object.path))
            debug = std::make_unique<elf::ElfFile>(elf::ElfFile::open(*debug_path));
        }
      } catch (const Error&) {
        // An object we cannot read (deleted, unusual) can still be searched by
        // nothing; patches for it are refused later with its build-id.
        file.reset();
      }
    }
    link::TargetObject lo;
    lo.path = object.path;
    lo.bias = object.bias;
    lo.span = object.span;
    lo.file = file.get();
    lo.debug_file = debug.get();
    lo.tls_modid = object.tls_modid;
    lo.tls_offset = object.tls_offset;
    link_objects.push_back(lo);
    files_.push_back(std::move(file));
    debug_files_.push_back(std::move(debug));
  }
  ifuncs_ = std::make_unique<IfuncResolution>(tracee_, objects_);
  auto resolve_ifunc = [this](RemoteAddr resolver) { return ifuncs_->resolve(resolver); };
  symbols_ = std::make_unique<link::TargetSymbols>(std::move(link_objects), resolve_ifunc);
  records_ = read_records(tracee.pid(), tracee.memory(), &record_problems_);
}

std::optional<size_t> TargetModel::find_by_build_id(const std::string& build_id) const {
  for (size_t i = 0; i < objects_.size(); ++i)
    if (!objects_[i].build_id.empty() && objects_[i].build_id == build_id && files_[i]) return i;
  return std::nullopt;
}

std::vector<RemoteRange> TargetModel::cold_parts(size_t index, const std::string& name, const std::string& file) const {
  std::vector<RemoteRange> parts;
  const std::string prefix = name + ".cold";
  auto scan = [&](const elf::ElfFile* f) {
    if (!f) return;
    for (const auto& s : f->symbols()) {
      if (s.type != STT_FUNC || !s.defined() || s.size == 0 || s.name.rfind(prefix, 0) != 0) continue;
      std::string_view rest = std::string_view(s.name).substr(prefix.size());
      if (!rest.empty() && rest[0] != '.') continue;  // NAME.coldish is another function
      if (!file.empty() && s.file != file) continue;
      RemoteRange r{objects_[index].bias + static_cast<int64_t>(s.value), s.size};
      if (std::find(parts.begin(), parts.end(), r) == parts.end()) parts.push_back(r);
    }
  };
  scan(debug_files_[index].get());
  scan(files_[index].get());
  return parts;
}

std::string TargetModel::symbolize(RemoteAddr address) const {
  for (const auto& r : records_) {
    if (!r.runs(address)) continue;
    for (const auto& d : r.redirects)
      if (d.thunk.contains(address)) return fmt::format("thunk of {} (patch {})", d.name, r.id);
    for (const auto& d : r.redirects)
      if (address >= d.destination && address < d.destination + static_cast<int64_t>(d.destination_size))
        return fmt::format("{}+{:#x} (patch {})", d.name, address - d.destination, r.id);
    return fmt::format("{} (code of patch {})", address, r.id);
  }
  for (size_t i = 0; i < objects_.size(); ++i) {
    const auto& object = objects_[i];
    if (!object.span.contains(address)) continue;
    std::string where = basename_of(object.path.empty() ? "[vdso]" : object.path);
    uint64_t offset = static_cast<uint64_t>(address - object.bias);
    const elf::Symbol* sym = nullptr;
    if (debug_files_[i]) sym = containing_function(debug_files_[i]->symbols(), offset);
    if (!sym && files_[i]) sym = containing_function(files_[i]->symbols(), offset);
    if (!sym && files_[i]) sym = containing_function(files_[i]->dynamic_symbols(), offset);
    if (sym) return fmt::format("{}+{:#x} ({})", sym->name, offset - sym->value, where);
    return fmt::format("{} ({})", address, where);
  }
  return to_string(address);
}

}  // namespace suture::engine

namespace suture::engine {

std::string TargetModel::describe_refusal(const consistency::SafePointResult& result,
                                          std::chrono::milliseconds timeout) const {
  std::string text =
      fmt::format("refused after {} checks in {:.1f} s: ", result.attempts, static_cast<double>(timeout.count()) / 1000.0);
  auto symbolize = [this](RemoteAddr a) { return this->symbolize(a); };
  for (size_t i = 0; i < result.conflicts.size(); ++i) {
    if (i) text += "\n";
    text += consistency::describe(result.conflicts[i], symbolize);
  }
  return text;
}

}  // namespace suture::engine
