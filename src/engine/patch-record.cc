#include "engine/patch-record.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/fnv1a.h"
#include "process/maps.h"

namespace suture::engine {
namespace {

using nlohmann::json;

constexpr char kMagic[16] = "SUTURE-RECORD-1";

// Addresses are written as fixed-width hex strings: JSON numbers lose precision
// above 2^53 in many readers, and a fixed width keeps the record's size
// independent of where things landed.
std::string hex_addr(RemoteAddr a) { return fmt::format("{:#018x}", a.value()); }

RemoteAddr parse_addr(const json& j) {
  const auto& s = j.get_ref<const std::string&>();
  size_t used = 0;
  uint64_t v = std::stoull(s, &used, 16);
  if (used != s.size()) throw Error("bad address '" + s + "'");
  return RemoteAddr(v);
}

std::string hex_bytes(const std::vector<uint8_t>& bytes) {
  std::string s;
  for (uint8_t b : bytes) s += fmt::format("{:02x}", b);
  return s;
}

std::vector<uint8_t> parse_bytes(const std::string& s) {
  if (s.size() % 2 != 0 || s.size() > 64) throw Error("bad byte string");
  std::vector<uint8_t> out;
  for (size_t i = 0; i < s.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoul(s.substr(i, 2), nullptr, 16)));
  return out;
}

json range_json(RemoteRange r) { return json{{"start", hex_addr(r.start)}, {"size", r.size}}; }
RemoteRange parse_range(const json& j) { return {parse_addr(j.at("start")), j.at("size").get<uint64_t>()}; }

void put_u32(std::vector<uint8_t>& out, size_t at, uint32_t v) { std::memcpy(out.data() + at, &v, 4); }
void put_u64(std::vector<uint8_t>& out, size_t at, uint64_t v) { std::memcpy(out.data() + at, &v, 8); }
template <typename T>
T get(std::span<const uint8_t> in, size_t at) {
  T v;
  std::memcpy(&v, in.data() + at, sizeof v);
  return v;
}

}  // namespace

std::string_view to_string(RecordState state) {
  switch (state) {
    case RecordState::prepared: return "prepared";
    case RecordState::active: return "active";
  }
  return "unknown";
}

std::vector<uint8_t> encode_record(const PatchRecord& r) {
  json redirects = json::array();
  for (const auto& d : r.redirects) {
    redirects.push_back({{"name", d.name},
                         {"function", hex_addr(d.function)},
                         {"function_size", d.function_size},
                         {"site", hex_addr(d.site)},
                         {"original", hex_bytes(d.original)},
                         {"jump", hex_bytes(d.jump)},
                         {"destination", hex_addr(d.destination)},
                         {"destination_size", d.destination_size},
                         {"thunk", range_json(d.thunk)}});
  }
  json imports = json::array();
  for (auto a : r.imports) imports.push_back(hex_addr(a));
  json eh_frames = json::array();
  for (auto a : r.eh_frames) eh_frames.push_back(hex_addr(a));
  json j = {{"sequence", r.sequence},         {"id", r.id},
            {"name", r.name},                 {"target_build_id", r.target_build_id},
            {"object", r.object_path},        {"applied_unix", r.applied_unix},
            {"region", range_json(r.region)}, {"text", range_json(r.text)},
            {"rodata", range_json(r.rodata)}, {"data", range_json(r.data)},
            {"thunks", range_json(r.thunks)},
            {"redirects", redirects},         {"imports", imports},
            {"eh_frames", eh_frames},
            {"unwind",
             {{"tables", hex_addr(r.unwind.tables)},
              {"object", hex_addr(r.unwind.object)},
              {"register", hex_addr(r.unwind.register_function)},
              {"deregister", hex_addr(r.unwind.deregister_function)}}}};
  std::string text = j.dump();

  std::vector<uint8_t> out(kRecordHeaderSize + text.size(), 0);
  std::memcpy(out.data(), kMagic, sizeof kMagic);
  put_u32(out, 16, static_cast<uint32_t>(r.state));
  put_u64(out, 24, text.size());
  std::memcpy(out.data() + kRecordHeaderSize, text.data(), text.size());
  put_u64(out, 32, fnv1a({out.data() + kRecordHeaderSize, text.size()}));
  return out;
}

PatchRecord decode_record(std::span<const uint8_t> bytes, std::string_view origin) {
  auto bad = [&](const std::string& what) { return Error(fmt::format("{}: {}", origin, what)); };
  if (bytes.size() < kRecordHeaderSize) throw bad("record truncated");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) throw bad("not a suture record");
  auto state = get<uint32_t>(bytes, 16);
  auto len = get<uint64_t>(bytes, 24);
  if (state != 1 && state != 2) throw bad(fmt::format("record state {} unknown", state));
  if (len > bytes.size() - kRecordHeaderSize) throw bad("record truncated");
  std::span<const uint8_t> text = bytes.subspan(kRecordHeaderSize, len);
  if (fnv1a(text) != get<uint64_t>(bytes, 32)) throw bad("record checksum mismatch (corrupted)");

  PatchRecord r;
  try {
    json j = json::parse(text.begin(), text.end());
    r.sequence = j.at("sequence").get<uint64_t>();
    r.id = j.at("id").get<std::string>();
    r.name = j.at("name").get<std::string>();
    r.target_build_id = j.at("target_build_id").get<std::string>();
    r.object_path = j.at("object").get<std::string>();
    r.applied_unix = j.at("applied_unix").get<uint64_t>();
    r.region = parse_range(j.at("region"));
    r.text = parse_range(j.at("text"));
    r.rodata = parse_range(j.at("rodata"));
    r.data = parse_range(j.at("data"));
    r.thunks = parse_range(j.at("thunks"));
    for (const auto& d : j.at("redirects")) {
      RedirectRecord rr;
      rr.name = d.at("name").get<std::string>();
      rr.function = parse_addr(d.at("function"));
      rr.function_size = d.at("function_size").get<uint64_t>();
      rr.site = parse_addr(d.at("site"));
      rr.original = parse_bytes(d.at("original").get<std::string>());
      rr.jump = parse_bytes(d.at("jump").get<std::string>());
      rr.destination = parse_addr(d.at("destination"));
      rr.destination_size = d.at("destination_size").get<uint64_t>();
      rr.thunk = parse_range(d.at("thunk"));
      if (rr.original.size() != rr.jump.size() || rr.jump.empty()) throw Error("redirect byte counts differ");
      r.redirects.push_back(std::move(rr));
    }
    for (const auto& a : j.at("imports")) r.imports.push_back(parse_addr(a));
    if (j.contains("eh_frames"))  // absent from records of older versions
      for (const auto& a : j.at("eh_frames")) r.eh_frames.push_back(parse_addr(a));
    if (j.contains("unwind")) {  // absent from records of older versions: nothing registered
      const json& u = j.at("unwind");
      r.unwind = {parse_addr(u.at("tables")), parse_addr(u.at("object")), parse_addr(u.at("register")),
                  parse_addr(u.at("deregister"))};
    }
  } catch (const Error& e) {
    throw bad(e.what());
  } catch (const std::exception& e) {
    throw bad(fmt::format("malformed record: {}", e.what()));
  }
  r.state = static_cast<RecordState>(state);
  return r;
}

void add_code_unwind_tables(const PatchRecord& record, std::vector<consistency::CodeUnwindTables>& out) {
  if (record.eh_frames.empty()) return;
  if (!record.text.empty()) out.push_back({record.text, record.eh_frames});
  if (!record.thunks.empty()) out.push_back({record.thunks, record.eh_frames});
}

std::vector<consistency::CodeUnwindTables> code_unwind_tables(const std::vector<PatchRecord>& records) {
  std::vector<consistency::CodeUnwindTables> out;
  for (const auto& r : records) add_code_unwind_tables(r, out);
  return out;
}

std::vector<PatchRecord> read_records(pid_t pid, const process::Memory& memory, std::vector<std::string>* problems) {
  std::vector<PatchRecord> records;
  const std::string prefix = "/memfd:" + std::string(kMemfdPrefix);
  for (const auto& m : process::read_maps(pid)) {
    if (m.offset != 0 || m.path.rfind(prefix, 0) != 0) continue;
    std::string origin = fmt::format("process {}: record at {}", pid, m.start);
    try {
      auto header = memory.read(m.start, kRecordHeaderSize);
      uint64_t len = 0;
      std::memcpy(&len, header.data() + 24, 8);
      uint64_t mapped = static_cast<uint64_t>(m.end - m.start);
      if (len > mapped - kRecordHeaderSize) throw Error(origin + ": record length exceeds its mapping");
      auto bytes = memory.read(m.start, kRecordHeaderSize + len);
      records.push_back(decode_record(bytes, origin));
    } catch (const Error& e) {
      if (problems) problems->push_back(e.what());
    }
  }
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.sequence < b.sequence; });
  return records;
}

void write_record_state(const process::Memory& memory, const PatchRecord& record, RecordState state) {
  uint32_t v = static_cast<uint32_t>(state);
  memory.write(record.record_address() + 16, {reinterpret_cast<const uint8_t*>(&v), sizeof v});
}

}  // namespace suture::engine
