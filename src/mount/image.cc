// SPDX-License-Identifier: Apache-2.0
#include <fcntl.h>

#include <array>
#include <cstddef>
#include <cstring>

#include "cfs/erofs/format.h"
#include "cfs/util/sys.h"
#include "cfs/verity/kernel.h"
#include "mount/image_internal.h"
#include "mount/kernel_internal.h"

namespace cfs::mount {
namespace {

// Only the header constants of erofs/format.h are used (header-only, no link dependency).
constexpr std::uint32_t kMagic = erofs::kComposefsMagic;
constexpr std::uint32_t kHeaderVersion = erofs::kComposefsHeaderVersion;
constexpr std::uint32_t kFlagHasAcl = erofs::kComposefsFlagHasAcl;
constexpr std::uint32_t kErofsMagic = erofs::kSuperMagic;
constexpr std::uint64_t kErofsSuperOffset = erofs::kSuperOffset;

std::uint32_t load_le32(const std::byte* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | std::to_integer<std::uint32_t>(p[i]);
  return v;
}

std::string digest_text(const verity::Digest& d) {
  return std::string(d.alg == verity::HashAlg::kSha512 ? "sha512:" : "sha256:") + d.hex();
}

Status compare(const verity::Digest& expected, const verity::Digest& actual,
               const std::string& path, const std::string& how) {
  if (expected == actual) return {};
  return fail(Errc::kDigestMismatch, "image " + path + ": wrong fs-verity digest (" + how +
                                         "): expected " + digest_text(expected) + ", got " +
                                         digest_text(actual));
}

}  // namespace

Result<OpenedImage> open_image(const std::string& path,
                               const std::optional<verity::Digest>& expected) {
  OpenedImage img;
  CFS_ASSIGN(img.fd, sys::open(path, O_RDONLY));
  CFS_ASSIGN(struct stat st, sys::fstat(img.fd.get(), path));
  if (!S_ISREG(st.st_mode))
    return fail(Errc::kInvalidInput, "image " + path + ": not a regular file");

  std::array<std::byte, 32> header{};
  CFS_ASSIGN(std::size_t got, sys::pread_full(img.fd.get(), header, 0));
  if (got < header.size() || load_le32(header.data()) != kMagic)
    return fail(Errc::kCorruptImage,
                "image " + path + ": not a composefs image (no composefs magic at offset 0)");
  if (std::uint32_t v = load_le32(header.data() + 4); v != kHeaderVersion)
    return fail(Errc::kUnsupportedFeature, "image " + path + ": composefs header version " +
                                               std::to_string(v) + " is not supported (expected " +
                                               std::to_string(kHeaderVersion) + ")");
  img.has_acl = (load_le32(header.data() + 8) & kFlagHasAcl) != 0;

  std::array<std::byte, 4> sb_magic{};
  CFS_ASSIGN(got, sys::pread_full(img.fd.get(), sb_magic, kErofsSuperOffset));
  if (got < sb_magic.size() || load_le32(sb_magic.data()) != kErofsMagic)
    return fail(Errc::kCorruptImage,
                "image " + path + ": composefs header without an EROFS superblock at offset 1024");

  if (!expected) return img;

  auto measured = verity::measure_verity(img.fd.get(), path);
  if (!measured && !verity::is_verity_unavailable(measured.error()))
    return fail(std::move(measured).error());
  if (measured) {
    // fs-verity makes the file immutable and the kernel verifies every page it reads, so
    // checking the descriptor digest here covers every byte the EROFS mount will read.
    CFS_TRY(compare(*expected, *measured, path, "kernel fs-verity measurement"));
    img.check = DigestCheck::kKernel;
    return img;
  }

  // No fs-verity on the image: digesting the file and then mounting it would leave a window in
  // which it could be rewritten. A sealed memfd cannot change after sealing, so the digest
  // covers exactly what is mounted.
  CFS_ASSIGN(UniqueFd copy, kernel::memfd_create("composefs-image"));
  CFS_TRY(kernel::copy_all(img.fd.get(), copy.get(), path + " into memfd"));
  CFS_TRY(kernel::seal_readonly(copy.get()));
  verity::Params params;
  params.alg = expected->alg;
  // A fresh open file description of the memfd reads from offset 0 whatever the copy left.
  CFS_ASSIGN(UniqueFd reader, sys::open(kernel::fd_path(copy.get()), O_RDONLY));
  CFS_ASSIGN(verity::Digest actual,
             verity::digest_fd(reader.get(), params, "sealed copy of " + path));
  CFS_TRY(compare(*expected, actual, path, "no fs-verity on the file; digest of a sealed copy"));
  img.fd = std::move(copy);
  img.check = DigestCheck::kSealedCopy;
  return img;
}

}  // namespace cfs::mount
