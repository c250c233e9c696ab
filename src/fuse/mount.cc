// SPDX-License-Identifier: Apache-2.0
#include "cfs/fuse/mount.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "cfs/erofs/reader.h"
#include "cfs/mount/mount.h"
#include "cfs/store/object_dirs.h"
#include "cfs/util/sys.h"
#include "cfs/verity/measure.h"
#include "cfs/vfs/filesystem.h"
#include "cfs/vfs/upper.h"
#include "fuse/problem_log.h"

namespace cfs::fuse {
namespace {

// The image is opened once; with digest= it is checked and exactly the checked bytes are
// served (the file itself when the kernel measures it, else a sealed copy), as the kernel
// mount does.
Result<erofs::Image> open_checked_image(const std::string& image, const mount::Options& opts) {
  CFS_ASSIGN(UniqueFd fd, sys::open_regular(image, "image"));
  if (opts.digest) {
    CFS_ASSIGN(verity::CheckedFile checked,
               verity::open_checked(std::move(fd), "image " + image, *opts.digest));
    fd = std::move(checked.fd);
  }
  return erofs::Image::open_fd(fd.get(), image);
}

Status serve_image(erofs::Image img, const std::string& image, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve,
                   std::shared_ptr<vfs::ObjectProvider> objects);

}  // namespace

vfs::Options vfs_options(const mount::Options& opts) {
  vfs::Options v;
  v.basedirs = opts.basedirs;
  v.verity = mount::effective_verity(opts, mount::Dialect::kFuse);
  // The server runs in / (libfuse's daemonize changes directory): a relative tree_cache= is
  // the caller's, or the trees would go to (or, missing, silently nowhere in) a directory of
  // that name in /.
  if (!opts.tree_cache.empty()) v.tree_cache_dir = sys::absolute_path(opts.tree_cache);
  if (opts.prefill_max) v.copy_max_bytes = *opts.prefill_max;
  return v;
}

Status mount_image(const std::string& image, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve) {
  return mount_image(image, mountpoint, opts, std::move(serve), nullptr);
}

Status mount_image(const std::string& image, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve,
                   std::shared_ptr<vfs::ObjectProvider> objects) {
  CFS_TRY(mount::validate(opts, mount::Dialect::kFuse));
  CFS_TRY(mount::check_mount_point(mountpoint));
  CFS_ASSIGN(erofs::Image img, open_checked_image(image, opts));
  return serve_image(std::move(img), image, mountpoint, opts, std::move(serve), std::move(objects));
}

Status mount_image(erofs::Image img, const std::string& name, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve,
                   std::shared_ptr<vfs::ObjectProvider> objects) {
  CFS_TRY(mount::validate(opts, mount::Dialect::kFuse));
  CFS_TRY(mount::check_mount_point(mountpoint));
  return serve_image(std::move(img), name, mountpoint, opts, std::move(serve), std::move(objects));
}

namespace {

Status serve_image(erofs::Image img, const std::string& image, const std::string& mountpoint,
                   const mount::Options& opts, ServeOptions serve,
                   std::shared_ptr<vfs::ObjectProvider> objects) {
  if (!objects) {
    CFS_ASSIGN(store::ObjectDirs dirs, store::ObjectDirs::open(opts.basedirs));
    CFS_TRY(mount::check_objects_present(img, dirs));
    objects = vfs::store_provider(std::move(dirs));
  } else {
    serve.max_threads = std::max(opts.threads, kFetchingMountThreads);
  }

  auto log = std::make_shared<ProblemLog>();
  vfs::Options vo = vfs_options(opts);
  vo.objects = objects;
  vo.on_problem = [log](const vfs::Problem& p) { log->log(p); };
  auto fs = vfs::Filesystem::open(std::move(img), std::move(vo));
  if (!fs) return fail(std::move(fs).error().with_context(image));
  log->set_filesystem(fs->get());

  serve.mountpoint = mountpoint;
  serve.fsname = image;
  if (!serve.max_threads) serve.max_threads = opts.threads;
  // nosuid, dev, noatime, ...: libfuse passes them to mount(2) as the kernel mount passes them
  // to fsmount(); the rest is libfuse's own (allow_other, max_read=, ...).
  serve.extra.insert(serve.extra.end(), opts.attr_options.begin(), opts.attr_options.end());
  serve.extra.insert(serve.extra.end(), opts.fuse_options.begin(), opts.fuse_options.end());
  serve.on_serving = [log, objects, then = std::move(serve.on_serving)](bool daemonized) {
    log->set_daemonized(daemonized);
    objects->start();
    if (then) then(daemonized);
  };
  if (opts.upperdir.empty()) return fuse::serve(std::move(*fs), serve);
  auto merged = vfs::MergedFs::open(std::move(*fs), opts.upperdir, opts.workdir);
  if (!merged) return fail(std::move(merged).error().with_context(opts.upperdir));
  return fuse::serve(std::move(*merged), serve);
}

}  // namespace

}  // namespace cfs::fuse
