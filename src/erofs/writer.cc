// SPDX-License-Identifier: Apache-2.0
#include "cfs/erofs/writer.h"

#include "erofs/emit_internal.h"
#include "erofs/plan_internal.h"

namespace cfs::erofs {

Result<WriteResult> write_image(const Tree& tree, const WriteOptions& opts, int out_fd) {
  CFS_ASSIGN(detail::Plan plan, detail::build_plan(tree, opts));
  CFS_TRY(detail::place(plan));
  verity::Params vp;
  vp.alg = opts.hash;
  detail::Sink sink(out_fd, vp);
  CFS_ASSIGN(verity::Digest digest, detail::emit(plan, sink));
  WriteResult r;
  r.digest = digest;
  r.size = sink.written();
  r.version = plan.version;
  return r;
}

}  // namespace cfs::erofs
