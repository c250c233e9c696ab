// SPDX-License-Identifier: Apache-2.0
#include "cfs/verity/kernel.h"

#include <linux/fsverity.h>

#include <cerrno>
#include <cstring>

#include "cfs/util/sys.h"

namespace cfs::verity {
namespace {

// ENOTTY: the filesystem has no fs-verity ioctls (tmpfs, overlayfs, kernels without
// CONFIG_FS_VERITY); ENOSYS is how some filesystems with their own ioctl handler say the same.
// EOPNOTSUPP: the filesystem knows them but verity is off (ext4 without the verity feature, or
// a Merkle block size it cannot use).
Error translate(Error e, const std::string& what, const char* op) {
  if (e.is_errno(ENOTTY) || e.is_errno(EOPNOTSUPP) || e.is_errno(ENOSYS))
    return Error(Errc::kUnsupportedFeature,
                 what + ": " + op + ": fs-verity not supported by this kernel/filesystem");
  if (e.is_errno(ENODATA))
    return Error(Errc::kObjectMissing, what + ": " + op + ": fs-verity not enabled on this file");
  return std::move(e).with_context(what + ": " + op);
}

Result<std::vector<std::uint8_t>> read_metadata(int fd, std::uint64_t type, const char* op,
                                                const std::string& what) {
  std::vector<std::uint8_t> out;
  std::vector<std::uint8_t> chunk(1 << 20);
  for (;;) {
    fsverity_read_metadata_arg arg{};
    arg.metadata_type = type;
    arg.offset = out.size();
    arg.length = chunk.size();
    arg.buf_ptr = reinterpret_cast<std::uintptr_t>(chunk.data());
    auto n = sys::ioctl(fd, FS_IOC_READ_VERITY_METADATA, &arg, "");
    if (!n) return fail(translate(std::move(n).error(), what, op));
    if (*n == 0) break;
    out.insert(out.end(), chunk.begin(), chunk.begin() + *n);
  }
  return out;
}

}  // namespace

Status enable_verity(int fd, const Params& p, const std::string& what) {
  CFS_TRY(validate_for_kernel(p));
  fsverity_enable_arg arg{};
  arg.version = 1;
  arg.hash_algorithm = static_cast<std::uint32_t>(p.alg);
  arg.block_size = p.block_size;
  arg.salt_size = static_cast<std::uint32_t>(p.salt.size());
  arg.salt_ptr = reinterpret_cast<std::uintptr_t>(p.salt.data());
  auto r = sys::ioctl(fd, FS_IOC_ENABLE_VERITY, &arg, "");
  if (!r) {
    if (r.error().is_errno(EEXIST)) return {};  // already enabled: the goal is met
    return fail(translate(std::move(r).error(), what, "enable fs-verity"));
  }
  return {};
}

Result<Digest> measure_verity(int fd, const std::string& what) {
  // fsverity_digest is followed by a flexible array: room for the largest digest after it.
  alignas(fsverity_digest) std::uint8_t raw[sizeof(fsverity_digest) + 64] = {};
  fsverity_digest hdr{};
  hdr.digest_size = 64;
  std::memcpy(raw, &hdr, sizeof hdr);
  auto r = sys::ioctl(fd, FS_IOC_MEASURE_VERITY, raw, "");
  if (!r) {
    // MEASURE itself never returns EINVAL; a filesystem rejecting the unknown command does.
    if (r.error().is_errno(EINVAL))
      return fail(Errc::kUnsupportedFeature,
                  what + ": measure fs-verity: fs-verity not supported by this filesystem");
    return fail(translate(std::move(r).error(), what, "measure fs-verity"));
  }
  std::memcpy(&hdr, raw, sizeof hdr);
  if (hdr.digest_algorithm != FS_VERITY_HASH_ALG_SHA256 &&
      hdr.digest_algorithm != FS_VERITY_HASH_ALG_SHA512)
    // This file's fs-verity is unusable here, not the filesystem's (is_verity_unsupported_here).
    return fail(Errc::kObjectMissing, what + ": kernel reports unknown hash algorithm " +
                                          std::to_string(hdr.digest_algorithm));
  Digest d = Digest::zero(static_cast<HashAlg>(hdr.digest_algorithm));
  if (hdr.digest_size != d.size)
    return fail(Errc::kCorruptImage, what + ": kernel returned a digest of unexpected size");
  std::memcpy(d.bytes.data(), raw + sizeof hdr, d.size);
  return d;
}

Result<std::vector<std::uint8_t>> read_verity_merkle_tree(int fd, const std::string& what) {
  return read_metadata(fd, FS_VERITY_METADATA_TYPE_MERKLE_TREE, "read Merkle tree", what);
}

Result<std::vector<std::uint8_t>> read_verity_descriptor(int fd, const std::string& what) {
  return read_metadata(fd, FS_VERITY_METADATA_TYPE_DESCRIPTOR, "read descriptor", what);
}

bool is_verity_unavailable(const Error& e) noexcept {
  return e.is(Errc::kUnsupportedFeature) || e.is(Errc::kObjectMissing);
}

bool is_verity_unsupported_here(const Error& e) noexcept { return e.is(Errc::kUnsupportedFeature); }

}  // namespace cfs::verity
