// SPDX-License-Identifier: Apache-2.0
// The redirect slimming transform (issue 15): a composefs image carries each object's digest
// twice, binary in trusted.overlay.metacopy and as 2n+2 hex characters ("/ab/cdef…", the
// object's path) in trusted.overlay.redirect. Hex does not compress onto the binary copy: the
// Debian image's EROFS is 945 KB zstd with the hex, 470 KB with it zeroed. slim_redirects()
// zeroes every redirect value that is the path of the same inode's metacopy
// digest and returns the *redirect table* that lists them; rebuild_redirects() writes each one
// back from the digest bytes the table points at. rebuild(slim(x)) == x for every image.
//
// The table document (docs/registry.md "Slim EROFS"), integers as minimal LEB128 varints:
//   "cfs-rdir"  magic (8 bytes)
//   version     1
//   algorithm   1 sha256, 2 sha512: the digest size n; each value is L = 2n + 2 bytes
//   count
//   count gaps  value i starts gap_i bytes after the end of value i-1 (the first: after 0)
//   count backs its digest's n bytes start back_i bytes before it: n <= back_i <= gap_i, so a
//               digest lies wholly between the previous value's end and its value's start
// nothing after. The mount side reads untrusted bytes: parse_redirect_table() is strict (a
// redundant varint byte, a value past the image, a digest that overlaps a value, bytes after
// the last column are errors naming the field) and bounded by the image's size; the rebuilt
// image is then checked against its fs-verity digest by the caller, so a wrong table can only
// make that check fail.
// Thread-safety: pure functions.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::erofs {

inline constexpr std::string_view kRedirectTableMagic = "cfs-rdir";
inline constexpr std::uint64_t kRedirectTableVersion = 1;

struct RedirectTable {
  verity::HashAlg alg = verity::HashAlg::kSha512;
  struct Entry {
    std::uint64_t value = 0;   ///< offset of the redirect value (L bytes) in the image
    std::uint64_t digest = 0;  ///< offset of the metacopy digest (n bytes) it is spelled from
    friend bool operator==(const Entry&, const Entry&) = default;
  };
  std::vector<Entry> entries;  ///< by increasing offset
  /// L: the length of a redirect value ("/" + 2 hex + "/" + the rest).
  std::size_t value_size() const noexcept { return 2 * verity::digest_size(alg) + 2; }
  friend bool operator==(const RedirectTable&, const RedirectTable&) = default;
};

struct SlimImage {
  std::string erofs;    ///< the image, each listed redirect value zeroed
  RedirectTable table;  ///< what rebuild_redirects() needs to undo it
};

/// Push side (the image is the repository's own): walks every inode of `image` and zeroes the
/// redirect values (inline or shared, each once) equal to "/" + tree::object_path(digest of
/// the inode's metacopy) whose digest lies before them (the writer's order: "overlay.metacopy"
/// sorts before "overlay.redirect"), in the algorithm of the first such digest. Others are left as
/// they are. Errors: the reader's (kCorruptImage) for an image it cannot walk.
Result<SlimImage> slim_redirects(std::span<const std::byte> image);

/// The table as a document (above).
std::string encode_redirect_table(const RedirectTable& table);

/// The largest document a table of an image of `image_size` bytes can take (every value of
/// L >= 66 bytes listed, each varint at most 10 bytes): a reader refuses a larger one before
/// decoding it.
std::uint64_t redirect_table_size_bound(std::uint64_t image_size) noexcept;

/// Mount side: parses an untrusted document for an image of `image_size` bytes. kInvalidInput
/// naming `what` and the field ("gaps[3]: value at 4096 ends past the image's 2048 bytes").
Result<RedirectTable> parse_redirect_table(std::string_view doc, std::uint64_t image_size,
                                           const std::string& what);

/// Writes each listed value from its digest bytes, in place. Each value must be zeros (what
/// slim_redirects() left), else kInvalidInput naming it: a table must not overwrite bytes it
/// did not take. The caller checks the result's fs-verity digest.
Status rebuild_redirects(std::span<std::byte> image, const RedirectTable& table,
                         const std::string& what);

/// rebuild_redirects() as the slimmed image streams in, for hashing it on the way (a lazy
/// mount hashes the EROFS while it downloads): feed() each piece in order and hash what it
/// returns, the piece as rebuilt; finish() once the image is whole. The caller's own copy of
/// the bytes is not changed (a zstd decoder may still read it as its window): rebuild it with
/// rebuild_redirects() once whole, which writes the same bytes.
class RedirectRebuilder {
 public:
  RedirectRebuilder(RedirectTable table, std::string what);
  /// The piece as rebuilt: `piece` itself when no value lies in it, else a copy (valid until the
  /// next call). Errors: a value that is not zeros (as rebuild_redirects()).
  Result<std::span<const std::byte>> feed(std::span<const std::byte> piece);
  /// After the last piece: every listed value lay in the image, else kInvalidInput.
  Status finish() const;
  const RedirectTable& table() const noexcept { return table_; }

 private:
  RedirectTable table_;
  std::string what_;
  std::uint64_t offset_ = 0;  // of the next piece
  std::size_t next_ = 0;      // the first entry whose value is not wholly fed
  std::array<std::uint8_t, 64> digest_{};
  std::string value_;  // entry next_'s value, spelled once its digest is whole
  std::vector<std::byte> copy_;
};

}  // namespace cfs::erofs
