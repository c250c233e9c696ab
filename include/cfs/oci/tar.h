// SPDX-License-Identifier: Apache-2.0
// A tar header parser over exact bytes (docs/oci-layers.md), written for layers: it never
// copies or rewrites the archive, it tells the caller how many bytes each header took, so a
// splitter can keep them inline and reproduce the layer bit for bit.
//
// Formats: ustar (with the prefix field), GNU (long names 'L' and long links 'K', base-256
// numbers), POSIX pax ('x' per entry: path, linkpath, size, uid, gid, mtime with fractional
// seconds, SCHILY.xattr.*; 'g' global headers are reported and otherwise ignored, as
// composefs-rs does), old v7 headers. Header checksums are checked (unsigned or signed sums).
// Refused with an error naming the entry and its offset: sparse entries (GNU 'S' and pax
// GNU.sparse.*), extension metadata over the limit (checked before it is read: a 1 GiB pax
// record is never allocated), repeated extension headers, malformed pax records, a zero block
// followed by data, an empty path, data on link/device/directory/fifo entries.
//
// The parser is sans-I/O: parse() looks at the bytes at the start of the next item and either
// asks for more (kNeedData with a total) or reports an item and the bytes its headers took;
// the caller skips the entry's data (Entry::data_size(), padded to 512) itself.
// Thread-safety: one thread per Parser.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "cfs/util/result.h"

namespace cfs::oci::tar {

inline constexpr std::size_t kBlockSize = 512;

/// Bytes of data plus padding to the next block.
constexpr std::uint64_t padded(std::uint64_t size) noexcept {
  return (size + kBlockSize - 1) / kBlockSize * kBlockSize;
}

struct Limits {
  /// Total payload of the extension headers ('x', 'L', 'K') of one entry, and of a 'g' header.
  std::uint64_t max_metadata = 1u << 20;
  /// Extension headers before one entry.
  std::size_t max_extensions = 16;
};

struct Entry {
  char typeflag = '0';      ///< raw type byte: '0'/'\0' file, '1' hardlink, '2' symlink, ...
  std::string path;         ///< pax path > GNU long name > ustar prefix + "/" + name
  std::string link_target;  ///< pax linkpath > GNU long link > linkname
  std::uint32_t mode = 0;   ///< the mode field as stored (permission bits, maybe more)
  std::uint64_t uid = 0;
  std::uint64_t gid = 0;
  std::uint64_t mtime = 0;                 ///< seconds (pax mtime: its integer part)
  std::uint32_t mtime_nsec = 0;            ///< pax mtime fraction, truncated or padded to 9 digits
  std::uint64_t size = 0;                  ///< bytes of data after the headers (pax size wins)
  std::optional<std::uint32_t> dev_major;  ///< ustar/GNU headers only
  std::optional<std::uint32_t> dev_minor;
  std::vector<std::pair<std::string, std::string>> xattrs;  ///< SCHILY.xattr.*, in order
  std::uint64_t offset = 0;  ///< archive offset of the first header of this entry

  /// '0', '\0' and '7' (contiguous): the entries whose data is file content.
  bool is_regular() const noexcept {
    return typeflag == '0' || typeflag == '\0' || typeflag == '7';
  }
};

enum class EventKind {
  kNeedData,  ///< call again with at least `need` bytes (or Parser::at_eof() at the end)
  kEntry,     ///< `entry`; its headers took `consumed` bytes, its data follows
  kGlobal,    ///< a pax global header of `consumed` bytes (data included)
  kEnd,       ///< end-of-archive blocks (`consumed` bytes); everything after is trailing data
};

struct Event {
  EventKind kind = EventKind::kNeedData;
  std::size_t consumed = 0;
  std::size_t need = 0;
  Entry entry;
};

class Parser {
 public:
  explicit Parser(Limits limits = {}) : limits_(limits) {}

  /// Parses the item whose first header starts at input[0], which is archive offset `offset`
  /// (for messages and Entry::offset).
  Result<Event> parse(std::span<const std::byte> input, std::uint64_t offset);

  /// The input ended with `rest` not parsed (fewer bytes than kNeedData asked for): a clean
  /// end at a header boundary or after zero blocks is kEnd, anything else an error.
  Result<Event> at_eof(std::span<const std::byte> rest, std::uint64_t offset) const;

 private:
  Limits limits_;
};

/// Parses a numeric header field: octal digits between spaces/NULs, or GNU base-256 (high bit
/// of the first byte). Negative or overflowing values are errors. Exposed for tests.
Result<std::uint64_t> parse_numeric(std::span<const std::byte> field);

/// The nanoseconds of a pax mtime value ("1700000000.123456789"): its fraction truncated or
/// padded to 9 digits; 0 without a fraction or when it is not all digits (composefs-rs'
/// pax_mtime_nsec).
std::uint32_t pax_mtime_nsec(std::string_view value);

}  // namespace cfs::oci::tar
