// SPDX-License-Identifier: Apache-2.0
// Little-endian integers for on-disk structs: stored as bytes, alignment 1, trivially copyable,
// so structs mirror the kernel's layout exactly and can be memcpy'd to and from image bytes.
#pragma once

#include <cstdint>
#include <type_traits>

namespace cfs {

template <typename T>
class Le {
  static_assert(std::is_unsigned_v<T>);

 public:
  constexpr Le() = default;
  constexpr Le(T v) { set(v); }  // NOLINT(google-explicit-constructor): on-disk value semantics
  constexpr T get() const {
    T v = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>(v | (T(b_[i]) << (8 * i)));
    return v;
  }
  constexpr void set(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i) b_[i] = static_cast<std::uint8_t>(v >> (8 * i));
  }
  constexpr operator T() const { return get(); }  // NOLINT(google-explicit-constructor)
  constexpr Le& operator=(T v) {
    set(v);
    return *this;
  }

 private:
  std::uint8_t b_[sizeof(T)] = {};
};

using le16 = Le<std::uint16_t>;
using le32 = Le<std::uint32_t>;
using le64 = Le<std::uint64_t>;
static_assert(sizeof(le64) == 8 && alignof(le64) == 1 && std::is_trivially_copyable_v<le64>);

}  // namespace cfs
