// The in-target record: what apply writes is what status and revert read back,
// and a damaged record is reported, never trusted.
#include "engine/patch-record.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/error.h"
#include "common/fnv1a.h"

namespace suture::engine {
namespace {

PatchRecord sample() {
  PatchRecord r;
  r.sequence = 3;
  r.id = "0123456789abcdef";
  r.name = "fix";
  r.target_build_id = "cc95e108628975ab442dcc20de12a93ffa700ae8";
  r.object_path = "/usr/bin/server";
  r.applied_unix = 1795313274;
  r.state = RecordState::active;
  r.region = {RemoteAddr(0x555500000000), 0x5000};
  r.text = {RemoteAddr(0x555500002000), 0x1000};
  r.rodata = {RemoteAddr(0x555500003000), 0x1000};
  r.data = {RemoteAddr(0x555500004000), 0x1000};
  r.thunks = {RemoteAddr(0x555500005000), 0x1000};
  RedirectRecord d;
  d.name = "build_reply";
  d.function = RemoteAddr(0x5555000a1230);
  d.function_size = 77;
  d.site = RemoteAddr(0x5555000a1234);
  d.original = {0x41, 0x57, 0x41, 0x56, 0x41};
  d.jump = {0xe9, 0xc7, 0x0d, 0xf6, 0xff};
  d.destination = RemoteAddr(0x555500002000);
  d.destination_size = 40;
  d.thunk = {RemoteAddr(0x555500005000), 72};
  r.redirects.push_back(d);
  r.imports = {RemoteAddr(0x7f0000001000), RemoteAddr(0x5555000a0000)};
  return r;
}

TEST(PatchRecord, RoundTrips) {
  PatchRecord r = sample();
  PatchRecord back = decode_record(encode_record(r), "test");
  EXPECT_EQ(back.sequence, r.sequence);
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.object_path, r.object_path);
  EXPECT_EQ(back.state, RecordState::active);
  EXPECT_EQ(back.region, r.region);
  EXPECT_EQ(back.thunks, r.thunks);
  ASSERT_EQ(back.redirects.size(), 1u);
  EXPECT_EQ(back.redirects[0].original, r.redirects[0].original);
  EXPECT_EQ(back.redirects[0].jump, r.redirects[0].jump);
  EXPECT_EQ(back.redirects[0].site, r.redirects[0].site);
  EXPECT_EQ(back.redirects[0].thunk, r.redirects[0].thunk);
  EXPECT_EQ(back.imports, r.imports);
}

TEST(PatchRecord, SizeDoesNotDependOnAddresses) {
  // apply sizes the record's space before it knows where anything lands.
  PatchRecord a = sample(), b = sample();
  b.region.start = RemoteAddr(0x1000);
  b.redirects[0].destination = RemoteAddr(0x7fffffffe000);
  EXPECT_EQ(encode_record(a).size(), encode_record(b).size());
}

TEST(PatchRecord, StateWordIsAtOffset16) {
  // write_record_state() rewrites only this word in the target.
  auto bytes = encode_record(sample());
  EXPECT_EQ(bytes[16], static_cast<uint8_t>(RecordState::active));
  bytes[16] = static_cast<uint8_t>(RecordState::prepared);
  EXPECT_EQ(decode_record(bytes, "test").state, RecordState::prepared);
}

TEST(PatchRecord, RejectsDamage) {
  auto good = encode_record(sample());
  auto expect_error = [](std::vector<uint8_t> bytes, const char* what) {
    try {
      decode_record(bytes, "rec");
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  auto bad_magic = good;
  bad_magic[0] = 'X';
  expect_error(bad_magic, "not a suture record");
  auto bad_state = good;
  bad_state[16] = 7;
  expect_error(bad_state, "state 7");
  auto flipped = good;
  flipped[kRecordHeaderSize + 5] ^= 1;
  expect_error(flipped, "checksum");
  expect_error(std::vector<uint8_t>(good.begin(), good.begin() + 40), "truncated");
  expect_error(std::vector<uint8_t>(good.begin(), good.end() - 3), "truncated");
}

// A record with `text` in place of its JSON, as an earlier version would have
// written it: header of `bytes`, length and checksum made to fit.
std::vector<uint8_t> with_text(const std::vector<uint8_t>& bytes, const std::string& text) {
  std::vector<uint8_t> out(kRecordHeaderSize + text.size());
  std::copy(bytes.begin(), bytes.begin() + kRecordHeaderSize, out.begin());
  std::copy(text.begin(), text.end(), out.begin() + kRecordHeaderSize);
  const uint64_t length = text.size(), checksum = fnv1a(text);
  std::memcpy(out.data() + 24, &length, 8);
  std::memcpy(out.data() + 32, &checksum, 8);
  return out;
}

TEST(PatchRecord, KeepsTheUnwindRegistration) {
  PatchRecord r = sample();
  r.unwind = {RemoteAddr(0x555500004080), RemoteAddr(0x555500004000), RemoteAddr(0x7ffff7b18c10),
              RemoteAddr(0x7ffff7b18d60)};
  const PatchRecord back = decode_record(encode_record(r), "test");
  EXPECT_EQ(back.unwind.tables, r.unwind.tables);
  EXPECT_EQ(back.unwind.object, r.unwind.object);
  EXPECT_EQ(back.unwind.register_function, r.unwind.register_function);
  EXPECT_EQ(back.unwind.deregister_function, r.unwind.deregister_function);
  EXPECT_EQ(encode_record(r).size(), encode_record(sample()).size());  // no registration is the same size
}

TEST(PatchRecord, ARecordFromBeforeUnwindRegistrationReadsAsNoneRegistered) {
  // The record as earlier versions wrote it: no "unwind" member (the last key).
  const auto bytes = encode_record(sample());
  std::string text(bytes.begin() + kRecordHeaderSize, bytes.end());
  const size_t at = text.find(",\"unwind\":");
  ASSERT_NE(at, std::string::npos);
  const PatchRecord back = decode_record(with_text(bytes, text.substr(0, at) + "}"), "old");
  EXPECT_EQ(back.id, sample().id);
  EXPECT_TRUE(back.unwind.empty());
}

TEST(PatchRecord, KeepsTheEhFrameLists) {
  PatchRecord r = sample();
  r.eh_frames = {RemoteAddr(0x555500003040), RemoteAddr(0x555500006100)};
  EXPECT_EQ(decode_record(encode_record(r), "test").eh_frames, r.eh_frames);
}

TEST(PatchRecord, ARecordFromBeforeEhFrameListsReadsAsNone) {
  PatchRecord r = sample();
  r.eh_frames = {RemoteAddr(0x555500003040)};
  const auto bytes = encode_record(r);
  std::string text(bytes.begin() + kRecordHeaderSize, bytes.end());
  const std::string key = "\"eh_frames\":[\"0x0000555500003040\"],";
  const size_t at = text.find(key);
  ASSERT_NE(at, std::string::npos) << text;
  text.erase(at, key.size());
  const PatchRecord back = decode_record(with_text(bytes, text), "old");
  EXPECT_EQ(back.id, r.id);
  EXPECT_TRUE(back.eh_frames.empty());
}

TEST(PatchRecord, EveryTruncationIsAnError) {
  auto good = encode_record(sample());
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_THROW(decode_record(std::span<const uint8_t>(good.data(), n), "rec"), Error) << n;
}

}  // namespace
}  // namespace suture::engine
