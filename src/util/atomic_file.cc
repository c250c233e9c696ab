// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <optional>
#include <utility>

#include "cfs/util/sys.h"
#include "cfs/util/sys_fs.h"
#include "cfs/util/temp_file.h"

namespace cfs {
namespace {

constexpr std::string_view kTempMarker = ".cfs-tmp-";
constexpr std::size_t kRandomChars = 6;

// Naming an O_TMPFILE file goes through /proc/self/fd (see sys::link_fd); without /proc the
// named temp is the only way.
bool can_link_unnamed() {
  static const bool ok = sys::stat("/proc/self/fd").has_value();
  return ok;
}

}  // namespace

AtomicFile::AtomicFile(UniqueFd dir, UniqueFd fd, std::string path, std::string base,
                       std::string temp)
    : dir_(std::move(dir)),
      fd_(std::move(fd)),
      path_(std::move(path)),
      base_(std::move(base)),
      temp_(std::move(temp)) {}

AtomicFile::AtomicFile(AtomicFile&& o) noexcept
    : dir_(std::move(o.dir_)),
      fd_(std::move(o.fd_)),
      path_(std::move(o.path_)),
      base_(std::move(o.base_)),
      temp_(std::move(o.temp_)),
      done_(std::exchange(o.done_, true)) {}

AtomicFile::~AtomicFile() {
  if (!done_ && !temp_.empty()) (void)sys::unlinkat(dir_.get(), temp_, 0);
}

bool AtomicFile::is_temp_name(std::string_view name) noexcept {
  if (name.size() < 1 + kTempMarker.size() + kRandomChars || name.front() != '.') return false;
  return name.substr(name.size() - kRandomChars - kTempMarker.size(), kTempMarker.size()) ==
         kTempMarker;
}

std::string AtomicFile::temp_prefix() const { return "." + base_ + std::string(kTempMarker); }

Result<AtomicFile> AtomicFile::create(const std::string& path, mode_t mode) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..")
    return fail_errno("output " + path + ": not a file name", EISDIR);
  auto dirfd = sys::open(dir, O_PATH | O_DIRECTORY);
  if (!dirfd) return fail(std::move(dirfd).error().with_context("output " + path));
  std::optional<UniqueFd> unnamed;
  if (can_link_unnamed()) {
    auto opened = sys::open_unnamed(dirfd->get(), ".", O_RDWR, mode);
    if (!opened) return fail(std::move(opened).error().with_context("output " + path));
    unnamed = std::move(*opened);
  }
  if (unnamed) return AtomicFile(std::move(*dirfd), std::move(*unnamed), path, std::move(base), {});
  AtomicFile out(std::move(*dirfd), UniqueFd(), path, std::move(base), {});
  CFS_ASSIGN(out.fd_, temp::create_named(out.dir_.get(), out.temp_prefix(), O_RDWR, mode, out.temp_,
                                         "output " + path));
  return out;
}

Status AtomicFile::publish_unnamed() {
  CFS_ASSIGN(bool linked, sys::link_fd(fd_.get(), dir_.get(), base_));
  if (linked) return {};
  // Something is in the way: give the data a temp name, then replace it in one rename. The
  // lock marks the temp as live for the moment it exists.
  CFS_TRY(sys::lock_shared(fd_.get(), path_));
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string name = temp::random_name(temp_prefix());
    CFS_ASSIGN(linked, sys::link_fd(fd_.get(), dir_.get(), name));
    if (linked) {
      temp_ = std::move(name);
      return sys::renameat(dir_.get(), temp_, dir_.get(), base_);
    }
  }
  return fail_errno("output " + path_ + ": no free temporary name", EEXIST);
}

Status AtomicFile::commit(bool durable) {
  if (durable) CFS_TRY(sys::fsync(fd_.get(), path_));
  if (temp_.empty())
    CFS_TRY(publish_unnamed());
  else
    CFS_TRY(sys::renameat(dir_.get(), temp_, dir_.get(), base_));
  done_ = true;
  // Renamed or linked: nothing named temp_ is left to remove. Delayed write errors of a
  // non-durable output surface here; the output is already in place then, as with close(2)
  // after rename(2) anywhere else.
  auto closed = fd_.close();
  if (!closed) return fail(std::move(closed).error().with_context(path_));
  return {};
}

}  // namespace cfs
