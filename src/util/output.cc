// SPDX-License-Identifier: Apache-2.0
#include "cfs/util/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfs/util/sys.h"

namespace cfs {
namespace {

// Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS).
constexpr int kMaxLinks = 40;

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool in_proc(const std::string& path) {
  auto dir = sys::real_path(parent_of(path));
  return dir && (*dir == "/proc" || dir->starts_with("/proc/"));
}

const char* refused_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a file, device or FIFO";
}

}  // namespace

Result<Output> Output::open(const std::string& path, mode_t mode) {
  Output out;
  out.what_ = path;
  if (path == "-") {
    out.fd_ = STDOUT_FILENO;
    out.is_stdout_ = true;
    return out;
  }
  auto stream = [&](const std::string& p) -> Result<Output> {
    // O_APPEND: a regular file behind /proc/self/fd/N continues where the shell put it.
    auto fd = sys::open(p, O_WRONLY | O_NOCTTY | O_APPEND);
    if (!fd) return fail(std::move(fd).error().with_context("output " + path));
    out.stream_ = std::move(*fd);
    out.fd_ = out.stream_.get();
    return std::move(out);
  };
  std::string cur = path;
  for (int hops = 0; hops <= kMaxLinks; ++hops) {
    auto st = sys::lstat(cur);
    if (!st && !st.error().is_errno(ENOENT))
      return fail(std::move(st).error().with_context("output " + path));
    if (!st || S_ISREG(st->st_mode)) {
      auto f = AtomicFile::create(cur, mode);
      if (!f) return fail(std::move(f).error());
      out.atomic_.emplace(std::move(*f));
      out.fd_ = out.atomic_->fd();
      return out;
    }
    if (S_ISCHR(st->st_mode) || S_ISFIFO(st->st_mode)) return stream(cur);
    if (!S_ISLNK(st->st_mode))
      return fail_errno("output " + path + ": refusing to replace " + refused_kind(st->st_mode),
                        S_ISDIR(st->st_mode) ? EISDIR : EINVAL);
    if (in_proc(cur)) return stream(cur);
    auto target = sys::readlinkat(AT_FDCWD, cur);
    if (!target) return fail(std::move(target).error().with_context("output " + path));
    cur = !target->empty() && target->front() == '/' ? std::move(*target)
                                                     : parent_of(cur) + "/" + *target;
  }
  return fail_errno("output " + path, ELOOP);
}

Status Output::commit(bool durable) {
  if (atomic_) {
    auto st = atomic_->commit(durable);
    if (!st) return fail(std::move(st).error().with_context("output " + what_));
    return {};
  }
  if (stream_) {
    auto st = stream_.close();
    if (!st) return fail(std::move(st).error().with_context("output " + what_));
  }
  return {};
}

}  // namespace cfs
