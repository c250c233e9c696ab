// SPDX-License-Identifier: Apache-2.0
// Only the on-disk structs of erofs/format.h are used (header-only, no link dependency).
#include <fcntl.h>

#include <array>
#include <cstddef>

#include "cfs/erofs/format.h"
#include "cfs/util/le.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"
#include "mount/image_internal.h"

namespace cfs::mount {

Result<OpenedImage> open_image(const std::string& path,
                               const std::optional<verity::Digest>& expected) {
  OpenedImage img;
  CFS_ASSIGN(img.fd, sys::open_regular(path, "image"));
  if (expected) {
    // The header below is read from the checked bytes, the ones that will be mounted.
    CFS_ASSIGN(verity::CheckedFile checked,
               verity::open_checked(std::move(img.fd), "image " + path, *expected));
    img.fd = std::move(checked.fd);
    img.check = checked.by_kernel ? DigestCheck::kKernel : DigestCheck::kSealedCopy;
  }

  erofs::ComposefsHeader header{};
  CFS_ASSIGN(std::size_t got,
             sys::pread_full(img.fd.get(), std::as_writable_bytes(std::span(&header, 1)), 0));
  if (got < sizeof header || header.magic != erofs::kComposefsMagic)
    return fail(Errc::kCorruptImage,
                "image " + path + ": not a composefs image (no composefs magic at offset 0)");
  if (std::uint32_t v = header.version; v != erofs::kComposefsHeaderVersion)
    return fail(Errc::kUnsupportedFeature, "image " + path + ": composefs header version " +
                                               std::to_string(v) + " is not supported (expected " +
                                               std::to_string(erofs::kComposefsHeaderVersion) +
                                               ")");
  img.has_acl = (header.flags & erofs::kComposefsFlagHasAcl) != 0;

  le32 sb_magic{};
  CFS_ASSIGN(got, sys::pread_full(img.fd.get(), std::as_writable_bytes(std::span(&sb_magic, 1)),
                                  erofs::kSuperOffset));
  if (got < sizeof sb_magic || sb_magic != erofs::kSuperMagic)
    return fail(Errc::kCorruptImage,
                "image " + path + ": composefs header without an EROFS superblock at offset 1024");
  return img;
}

}  // namespace cfs::mount
