// Addresses in the target process. They are never dereferenced by the controller;
// only meaningful arithmetic is offered, so a host pointer or an offset cannot be
// mistaken for one.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace suture {

class RemoteAddr {
 public:
  constexpr RemoteAddr() = default;
  constexpr explicit RemoteAddr(uint64_t value) : value_(value) {}

  constexpr uint64_t value() const { return value_; }
  constexpr bool is_null() const { return value_ == 0; }

  constexpr RemoteAddr operator+(int64_t delta) const { return RemoteAddr(value_ + static_cast<uint64_t>(delta)); }
  constexpr RemoteAddr operator-(int64_t delta) const { return RemoteAddr(value_ - static_cast<uint64_t>(delta)); }
  constexpr RemoteAddr& operator+=(int64_t delta) { value_ += static_cast<uint64_t>(delta); return *this; }
  // Distance between two remote addresses (may be negative).
  constexpr int64_t operator-(RemoteAddr other) const { return static_cast<int64_t>(value_ - other.value_); }
  constexpr auto operator<=>(const RemoteAddr&) const = default;

  constexpr RemoteAddr align_down(uint64_t alignment) const { return RemoteAddr(value_ & ~(alignment - 1)); }
  constexpr RemoteAddr align_up(uint64_t alignment) const {
    return RemoteAddr((value_ + alignment - 1) & ~(alignment - 1));
  }

 private:
  uint64_t value_ = 0;
};

// A half-open range [start, start + size) of the target's address space.
struct RemoteRange {
  RemoteAddr start;
  uint64_t size = 0;

  constexpr RemoteAddr end() const { return start + static_cast<int64_t>(size); }
  constexpr bool contains(RemoteAddr a) const { return a >= start && a < end(); }
  constexpr bool overlaps(const RemoteRange& o) const { return start < o.end() && o.start < end(); }
  constexpr bool empty() const { return size == 0; }
  constexpr auto operator<=>(const RemoteRange&) const = default;
};

inline std::string to_string(RemoteAddr a) { return fmt::format("{:#x}", a.value()); }

}  // namespace suture

template <>
struct fmt::formatter<suture::RemoteAddr> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(suture::RemoteAddr a, Ctx& ctx) const {
    return fmt::format_to(ctx.out(), "{:#x}", a.value());
  }
};
