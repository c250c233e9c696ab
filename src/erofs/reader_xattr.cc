// SPDX-License-Identifier: Apache-2.0
// Xattr decoding: the in-inode body (header, shared ids, inline entries) and the shared table.
// Upstream's reader reports inline entries before shared ones; composefs-info dump prints them
// in that order, so we return them the same way.
#include <fmt/core.h>

#include <array>

#include "cfs/erofs/reader.h"
#include "cfs/overlay/metacopy.h"
#include "cfs/overlay/xattr.h"
#include "erofs/reader_internal.h"

namespace cfs::erofs {

using detail::corrupt;
using detail::in_bounds;
using detail::load;

namespace {

// e_name_index -> prefix (EROFS_XATTR_INDEX_*); index 0 stores the full name.
constexpr std::array<std::string_view, 7> kPrefixes = {
    "",        "user.",    "system.posix_acl_access", "system.posix_acl_default", "trusted.",
    "lustre.", "security."};

// One entry, decoded in place: views of the image's bytes.
struct EntryView {
  std::string_view prefix;  // of e_name_index
  std::string_view name;    // the stored rest of the name
  std::string_view value;
  std::uint64_t padded = 0;  // the entry's size with its padding
};

// Decodes the entry at `off`, which must end at or before `limit`.
// `what()` names the entry in an error: formatted only then, since every open and getxattr of
// the FUSE server and the lazy mount's walk of the image (session 13: ~1 ms of its CPU in
// fmt::format for a Debian image) decode entries, and nearly none are corrupt.
template <typename What>
Result<EntryView> view_entry(std::span<const std::byte> b, std::uint64_t off, std::uint64_t limit,
                             const What& what) {
  if (!in_bounds(off, sizeof(XattrEntry), limit))
    return corrupt(fmt::format("{}: entry header out of bounds", what()));
  auto e = load<XattrEntry>(b, off);
  if (e.e_name_index >= kPrefixes.size())
    return corrupt(fmt::format("{}: unsupported e_name_index {}", what(), e.e_name_index));
  std::uint64_t len = sizeof(XattrEntry) + e.e_name_len + std::uint64_t{e.e_value_size};
  if (!in_bounds(off, len, limit))
    return corrupt(fmt::format("{}: entry (name {} + value {} bytes) out of bounds", what(),
                               e.e_name_len, std::uint16_t{e.e_value_size}));
  EntryView v;
  v.prefix = kPrefixes[e.e_name_index];
  if (v.prefix.size() + e.e_name_len == 0) return corrupt(fmt::format("{}: empty name", what()));
  v.name = detail::view(b, off + sizeof(XattrEntry), e.e_name_len);
  v.value = detail::view(b, off + sizeof(XattrEntry) + e.e_name_len, e.e_value_size);
  v.padded = (len + 3) & ~std::uint64_t{3};
  return v;
}

// Calls fn(entry, shared) for each xattr of `ino` in the order upstream's reader reports them
// (inline entries, then the shared ones); stops at the first corrupt entry with its error. One
// walk for xattrs(), which copies every entry, and metacopy_digest(), which copies none.
template <typename Fn>
Status for_each_xattr(std::span<const std::byte> bytes, std::uint32_t xattr_blkaddr,
                      const InodeInfo& ino, const Fn& fn) {
  if (ino.xattr_size == 0) return {};
  std::uint64_t start =
      ino.inode_offset + (ino.extended ? sizeof(InodeExtended) : sizeof(InodeCompact));
  std::uint64_t end = start + ino.xattr_size;  // in bounds: checked by inode()
  auto hdr = load<XattrIbodyHeader>(bytes, start);
  std::uint64_t shared = hdr.h_shared_count;
  if (sizeof(XattrIbodyHeader) + shared * 4 > ino.xattr_size)
    return corrupt(
        fmt::format("nid {}: h_shared_count {} exceeds the xattr body", ino.nid, shared));
  std::uint64_t p = start + sizeof(XattrIbodyHeader) + shared * 4;
  std::size_t n = 0;
  while (p < end) {
    CFS_ASSIGN(EntryView e, view_entry(bytes, p, end, [&] {
                 return fmt::format("nid {}: inline xattr {}", ino.nid, n);
               }));
    fn(e, false);
    p += e.padded;
    ++n;
  }
  const std::uint64_t table = std::uint64_t{xattr_blkaddr} * kBlockSize;
  for (std::uint64_t i = 0; i < shared; ++i) {
    std::uint32_t id = load<le32>(bytes, start + sizeof(XattrIbodyHeader) + i * 4);
    CFS_ASSIGN(EntryView e, view_entry(bytes, table + std::uint64_t{id} * 4, bytes.size(), [&] {
                 return fmt::format("nid {}: shared xattr id {}", ino.nid, id);
               }));
    fn(e, true);
  }
  return {};
}

bool is_named(const EntryView& e, std::string_view full) {
  return e.prefix.size() + e.name.size() == full.size() && full.starts_with(e.prefix) &&
         full.substr(e.prefix.size()) == e.name;
}

}  // namespace

Result<std::vector<RawXattr>> Image::xattrs(const InodeInfo& ino) const {
  std::vector<RawXattr> out;
  CFS_TRY(for_each_xattr(bytes_, info_.xattr_blkaddr, ino, [&](const EntryView& e, bool shared) {
    RawXattr x;
    x.name.reserve(e.prefix.size() + e.name.size());
    x.name.assign(e.prefix);
    x.name.append(e.name);
    x.value.assign(e.value);
    x.shared = shared;
    out.push_back(std::move(x));
  }));
  return out;
}

Result<std::vector<RawXattr>> Image::xattrs(std::uint64_t nid) const {
  CFS_ASSIGN(InodeInfo ino, inode(nid));
  return xattrs(ino);
}

Result<std::optional<verity::Digest>> Image::metacopy_digest(const InodeInfo& ino) const {
  // The last one, as backing_from_xattrs takes it.
  std::optional<verity::Digest> out;
  CFS_TRY(for_each_xattr(bytes_, info_.xattr_blkaddr, ino, [&](const EntryView& e, bool) {
    if (is_named(e, overlay::kMetacopy)) out = overlay::Metacopy::read_digest(e.value);
  }));
  return out;
}

Result<detail::BackingSpans> detail::backing_spans(const Image& image, const InodeInfo& ino) {
  BackingSpans out;
  const auto bytes = image.bytes();
  const auto at = [&](std::string_view v) {
    return static_cast<std::uint64_t>(reinterpret_cast<const std::byte*>(v.data()) - bytes.data());
  };
  CFS_TRY(
      for_each_xattr(bytes, image.info().xattr_blkaddr, ino, [&](const EntryView& e, bool shared) {
        if (shared) return;
        if (is_named(e, overlay::kMetacopy)) {
          out.metacopy = at(e.value);
          out.metacopy_size = e.value.size();
        } else if (is_named(e, overlay::kRedirect)) {
          out.redirect = at(e.value);
          out.redirect_size = e.value.size();
        }
      }));
  return out;
}

Backing backing_from_xattrs(const std::vector<RawXattr>& xattrs) {
  Backing b;
  for (const auto& x : xattrs) {
    if (x.name == overlay::kRedirect)
      b.payload.assign(overlay::redirect_payload(x.value));
    else if (x.name == overlay::kMetacopy)
      b.digest = overlay::Metacopy::read_digest(x.value);
  }
  return b;
}

}  // namespace cfs::erofs
