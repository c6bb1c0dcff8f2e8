// The patch file format: round trips, and a message that names the defect for
// every kind of damage, layer by layer (envelope, metadata, object).
#include "patchfile/patch-file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "sample-patch.h"

namespace suture::patchfile {
namespace {

using testing::envelope;
using testing::fixture_object;
using testing::metadata_of;
using testing::sample_patch;

constexpr const char* origin = "fix.sut";

std::string rejection(const std::vector<uint8_t>& bytes) {
  try {
    parse(bytes, origin);
  } catch (const Error& error) {
    std::string message = error.what();
    EXPECT_EQ(message.rfind(std::string(origin) + ": ", 0), 0u) << message;
    return message;
  }
  ADD_FAILURE() << "parse() accepted the file";
  return {};
}

#define EXPECT_REJECTED(bytes, expected)                               \
  do {                                                                 \
    std::string message_ = rejection(bytes);                           \
    EXPECT_NE(message_.find(expected), std::string::npos) << message_; \
  } while (0)

void expect_same(const Patch& a, const Patch& b) {
  EXPECT_EQ(a.format_version, b.format_version);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.target_build_id, b.target_build_id);
  EXPECT_EQ(a.target_name, b.target_name);
  EXPECT_EQ(a.created_unix, b.created_unix);
  ASSERT_EQ(a.replacements.size(), b.replacements.size());
  for (size_t i = 0; i < a.replacements.size(); ++i) {
    const auto &x = a.replacements[i], &y = b.replacements[i];
    EXPECT_EQ(x.spelling, y.spelling);
    EXPECT_EQ(x.symbol, y.symbol);
    EXPECT_EQ(x.file, y.file);
    EXPECT_EQ(x.target_value, y.target_value);
    EXPECT_EQ(x.target_size, y.target_size);
    EXPECT_EQ(x.new_symbol, y.new_symbol);
  }
  ASSERT_EQ(a.bindings.size(), b.bindings.size());
  for (size_t i = 0; i < a.bindings.size(); ++i) {
    EXPECT_EQ(a.bindings[i].local, b.bindings[i].local);
    EXPECT_EQ(a.bindings[i].symbol, b.bindings[i].symbol);
    EXPECT_EQ(a.bindings[i].file, b.bindings[i].file);
  }
  EXPECT_EQ(a.object, b.object);
}

// Metadata of the sample patch as JSON, to break one field at a time.
nlohmann::json sample_metadata() { return nlohmann::json::parse(metadata_of(serialize(sample_patch()))); }

std::vector<uint8_t> with_metadata(const nlohmann::json& metadata) {
  return envelope(metadata.dump(), fixture_object());
}

TEST(PatchFile, RoundTrip) {
  Patch patch = sample_patch();
  auto bytes = serialize(patch);
  EXPECT_TRUE(looks_like_patch(bytes));
  expect_same(parse(bytes, origin), patch);
  // The layout comment of patch-file.h, independently implemented, agrees.
  EXPECT_EQ(bytes, envelope(metadata_of(bytes), patch.object));
}

TEST(PatchFile, RoundTripThroughTheFileSystem) {
  auto dir = std::filesystem::temp_directory_path() / ("suture-patchfile-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "fix.sut").string();
  Patch patch = sample_patch();
  write_file(patch, path);
  patch.name = "second version";
  write_file(patch, path);  // replaces the first, atomically
  expect_same(read_file(path), patch);
  size_t entries = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1u);  // no temporary left behind
  std::filesystem::remove_all(dir);

  try {
    write_file(patch, (dir / "missing" / "fix.sut").string());
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(std::string(error.what()).rfind((dir / "missing" / "fix.sut").string() + ": ", 0), 0u)
        << error.what();
  }
  try {
    read_file((dir / "gone.sut").string());
    FAIL();
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("gone.sut: cannot open"), std::string::npos) << error.what();
  }
}

TEST(PatchFile, AssignIdIsStableAndSensitive) {
  Patch patch = sample_patch();
  std::string id = patch.id;
  EXPECT_EQ(id.size(), 16u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos);
  assign_id(patch);
  EXPECT_EQ(patch.id, id);

  patch.name = "a label only";  // does not change behaviour, so not the id
  patch.created_unix = 1;
  assign_id(patch);
  EXPECT_EQ(patch.id, id);

  patch.replacements[0].new_symbol = "other";
  assign_id(patch);
  EXPECT_NE(patch.id, id);

  Patch moved = sample_patch();  // same bytes split differently between fields
  moved.bindings[0].symbol = "helperu";
  moved.bindings[0].file = "til.c";
  assign_id(moved);
  EXPECT_NE(moved.id, id);

  Patch other_target = sample_patch();
  other_target.target_build_id[0] = 'f';
  assign_id(other_target);
  EXPECT_NE(other_target.id, id);

  Patch other_object = sample_patch();
  other_object.object.back() ^= 1;
  assign_id(other_object);
  EXPECT_NE(other_object.id, id);
}

TEST(PatchFile, LooksLikePatch) {
  auto bytes = serialize(sample_patch());
  EXPECT_TRUE(looks_like_patch(std::span(bytes).first(8)));
  EXPECT_FALSE(looks_like_patch(std::span(bytes).first(7)));
  EXPECT_FALSE(looks_like_patch(fixture_object()));
  EXPECT_FALSE(looks_like_patch({}));
}

TEST(PatchFile, EveryTruncationIsRejected) {
  auto bytes = serialize(sample_patch());
  for (size_t size = 0; size < bytes.size(); ++size) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<long>(size));
    std::string message = rejection(prefix);
    ASSERT_NE(message.find("truncated"), std::string::npos) << "at " << size << ": " << message;
  }
  auto metadata_length = metadata_of(bytes).size();
  std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + 40);
  EXPECT_REJECTED(prefix,
                  fmt::format("truncated: header says {} bytes of metadata, file has 8", metadata_length));
  prefix.assign(bytes.begin(), bytes.end() - 1);
  EXPECT_REJECTED(prefix, fmt::format("truncated: header says {} bytes of object, file has {}",
                                      fixture_object().size(), fixture_object().size() - 1));
}

TEST(PatchFile, EnvelopeDefects) {
  const auto good = serialize(sample_patch());

  auto bytes = good;
  bytes.push_back(0);
  EXPECT_REJECTED(bytes, "1 stray bytes after the object");

  bytes = good;
  bytes[0] = 'X';
  EXPECT_REJECTED(bytes, "not a suture patch file (bad magic)");
  EXPECT_REJECTED(fixture_object(), "bad magic");

  bytes = good;
  bytes[40] ^= 0x20;  // inside the metadata
  EXPECT_REJECTED(bytes, "checksum mismatch");
  bytes = good;
  bytes.back() ^= 1;  // inside the object
  EXPECT_REJECTED(bytes, "checksum mismatch");

  Patch newer = sample_patch();
  newer.format_version = 2;
  EXPECT_REJECTED(serialize(newer), "format version 2 was written by a newer suture");
  newer.format_version = 0;
  EXPECT_REJECTED(serialize(newer), "format version 0");

  bytes = good;
  bytes[15] = 0x7f;  // metadata length near 2 GiB
  EXPECT_REJECTED(bytes, "more than the limit");
  bytes = good;
  bytes[23] = 0x01;  // object length 2^56
  EXPECT_REJECTED(bytes, "more than the limit");
}

TEST(PatchFile, MetadataMustBeJsonOfTheRightShape) {
  EXPECT_REJECTED(envelope("{\"id\": ", fixture_object()), "metadata: not valid JSON");
  EXPECT_REJECTED(envelope("[1, 2]", fixture_object()), "metadata: expected a JSON object, found array");
  EXPECT_REJECTED(envelope("\"\xff\xfe\"", fixture_object()), "metadata: not valid JSON");
  EXPECT_REJECTED(envelope(std::string(1000, '[') + std::string(1000, ']'), fixture_object()),
                  "metadata: nested more than 32 deep");
  EXPECT_REJECTED(envelope("", fixture_object()), "metadata: not valid JSON");
}

TEST(PatchFile, EveryFieldIsTypeChecked) {
  struct Case {
    nlohmann::json::json_pointer where;
    nlohmann::json value;
    std::string expected;
  };
  using ptr = nlohmann::json::json_pointer;
  std::vector<Case> cases = {
      {ptr("/format_version"), "1", "format_version: expected a non-negative integer, found string"},
      {ptr("/format_version"), 2, "format_version 2 disagrees with the header's version 1"},
      {ptr("/id"), 12, "metadata: id: expected a string, found number"},
      {ptr("/name"), nullptr, "metadata: name: expected a string, found null"},
      {ptr("/target_build_id"), true, "target_build_id: expected a string, found boolean"},
      {ptr("/target_name"), nlohmann::json::array(), "target_name: expected a string, found array"},
      {ptr("/created_unix"), -5, "created_unix: expected a non-negative integer, found -5"},
      {ptr("/created_unix"), 1.5, "created_unix: expected a non-negative integer, found 1.5"},
      {ptr("/replacements"), nlohmann::json::object(), "replacements: expected an array, found object"},
      {ptr("/replacements/1"), "compute", "replacements[1]: expected an object, found string"},
      {ptr("/replacements/0/spelling"), 1, "replacements[0].spelling: expected a string"},
      {ptr("/replacements/0/symbol"), 1, "replacements[0].symbol: expected a string"},
      {ptr("/replacements/0/file"), 1, "replacements[0].file: expected a string"},
      {ptr("/replacements/0/target_value"), "0x1139",
       "replacements[0].target_value: expected a non-negative"},
      {ptr("/replacements/0/target_size"), -1, "replacements[0].target_size: expected a non-negative"},
      {ptr("/replacements/0/new_symbol"), nullptr, "replacements[0].new_symbol: expected a string"},
      {ptr("/bindings"), "none", "bindings: expected an array, found string"},
      {ptr("/bindings/0"), 3, "bindings[0]: expected an object, found number"},
      {ptr("/bindings/0/local"), 3, "bindings[0].local: expected a string"},
      {ptr("/bindings/0/symbol"), 3, "bindings[0].symbol: expected a string"},
      {ptr("/bindings/0/file"), 3, "bindings[0].file: expected a string"},
  };
  for (const Case& c : cases) {
    auto metadata = sample_metadata();
    metadata[c.where] = c.value;
    EXPECT_REJECTED(with_metadata(metadata), c.expected);
  }

  for (const char* key : {"format_version", "id", "name", "target_build_id", "target_name", "created_unix",
                          "replacements", "bindings"}) {
    auto metadata = sample_metadata();
    metadata.erase(key);
    EXPECT_REJECTED(with_metadata(metadata), fmt::format("metadata: {}: missing", key));
  }
  auto metadata = sample_metadata();
  metadata["replacements"][1].erase("target_size");
  EXPECT_REJECTED(with_metadata(metadata), "metadata: replacements[1].target_size: missing");

  // Unknown keys are for later versions to add; they are ignored.
  metadata = sample_metadata();
  metadata["added_later"] = {{"anything", 1}};
  metadata["replacements"][0]["hint"] = "x";
  EXPECT_NO_THROW(parse(with_metadata(metadata), origin));
}

TEST(PatchFile, ValuesAreChecked) {
  struct Case {
    nlohmann::json::json_pointer where;
    nlohmann::json value;
    std::string expected;
  };
  using ptr = nlohmann::json::json_pointer;
  std::vector<Case> cases = {
      {ptr("/id"), "0123", "id '0123' is not 16 lowercase hex digits"},
      {ptr("/id"), "0123456789ABCDEF", "is not 16 lowercase hex digits"},
      {ptr("/target_build_id"), "", "target_build_id '' is not a build-id"},
      {ptr("/target_build_id"), "abc", "is not a build-id"},
      {ptr("/target_build_id"), "xy", "is not a build-id"},
      {ptr("/replacements/0/target_size"), 0, "replacements[0] (compute): target_size is 0"},
      {ptr("/replacements/0/target_value"), ~uint64_t{0}, "overflows"},
      {ptr("/replacements/0/symbol"), "", "replacements[0]: symbol is empty"},
      {ptr("/replacements/0/new_symbol"), "", "new_symbol is empty"},
      {ptr("/replacements/0/new_symbol"), "no_such_function",
       "replacements[0] (compute): 'no_such_function' is not in the object"},
      {ptr("/replacements/0/new_symbol"), "data_symbol",
       "'data_symbol' is not a function defined in a code section"},
      {ptr("/replacements/0/new_symbol"), "helper_target", "'helper_target' is not defined in the object"},
      {ptr("/bindings/0/local"), "patched_function",
       "bindings[0]: the object defines 'patched_function' itself"},
      {ptr("/bindings/0/local"), "", "bindings[0]: local is empty"},
      {ptr("/bindings/0/symbol"), "", "bindings[0] (helper_target): symbol is empty"},
  };
  for (const Case& c : cases) {
    auto metadata = sample_metadata();
    metadata[c.where] = c.value;
    EXPECT_REJECTED(with_metadata(metadata), c.expected);
  }

  // One function of the target (symbol and file) is replaced once.
  auto twice = sample_metadata();
  twice["replacements"][1]["symbol"] = "compute";
  twice["replacements"][1]["file"] = "";
  EXPECT_REJECTED(with_metadata(twice), "replacements[1]: compute is replaced twice");

  // A binding for a symbol the object does not reference is allowed.
  auto metadata = sample_metadata();
  metadata["bindings"].push_back({{"local", "unused"}, {"symbol", "x"}, {"file", ""}});
  EXPECT_NO_THROW(parse(with_metadata(metadata), origin));
  metadata["bindings"].push_back({{"local", "unused"}, {"symbol", "y"}, {"file", ""}});
  EXPECT_REJECTED(with_metadata(metadata), "bindings[2]: 'unused' is bound twice");

  metadata = sample_metadata();
  metadata["replacements"] = nlohmann::json::array();
  for (int i = 0; i < 100001; ++i) metadata["replacements"].push_back(0);
  EXPECT_REJECTED(with_metadata(metadata), "100001 replacements, more than the limit of 100000");
}

TEST(PatchFile, ObjectMustBeARelocatableX86Object) {
  auto metadata = metadata_of(serialize(sample_patch()));
  EXPECT_REJECTED(envelope(metadata, {}), "fix.sut: object: not an ELF file");
  std::vector<uint8_t> garbage(100, 0x41);
  EXPECT_REJECTED(envelope(metadata, garbage), "fix.sut: object: not an ELF file");

  // An executable is a sane ELF file, but not a patch object.
  std::ifstream in("/usr/bin/true", std::ios::binary);
  std::vector<uint8_t> executable{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_REJECTED(envelope(metadata, executable), "fix.sut: object: ELF type 3 is not a relocatable object");

  auto object = fixture_object();
  object[18] = 183;  // e_machine = EM_AARCH64
  EXPECT_REJECTED(envelope(metadata, object), "fix.sut: object: machine 183 is not x86-64");
}

}  // namespace
}  // namespace suture::patchfile
