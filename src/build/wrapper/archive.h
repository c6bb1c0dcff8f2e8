// archive: which objects a static library (`ar` archive) holds, so that
// `suture build` can follow an object into the binary it reaches only through
// a library (Redis links deps/lua/src/liblua.a, never lparser.o itself).
//
// The wrapper logs compiles and links, not `ar`: archives are read after the
// fact. A member is matched to an object of the build by its bytes, not only
// its name, since `ar` keeps a bare file name and two directories may each have
// their own util.o; `ar` stores a member's bytes unchanged, so the object the
// compile wrote and the member are byte for byte the same file. GNU thin
// archives hold paths instead of bytes and are matched by path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace suture::build::wrapper {

struct ArchiveMember {
  std::string name;            // as stored: GNU "/123" long names resolved, the trailing '/' dropped
  std::vector<uint8_t> bytes;  // empty for a thin archive
  std::string path;            // thin archives: the member's path, absolute
};

// Throws Error("ARCHIVE: ...") when PATH is not an ar archive or is cut short.
std::vector<ArchiveMember> read_archive(const std::string& path);

// Whether PATH starts with an archive's magic ("!<arch>\n" or "!<thin>\n").
bool is_archive(const std::string& path);

// Whether the archive at ARCHIVE holds the object at OBJECT (same file name and
// same bytes; for a thin archive, the same path).
bool archive_holds(const std::string& archive, const std::string& object);

}  // namespace suture::build::wrapper
