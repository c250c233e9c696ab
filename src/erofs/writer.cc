// SPDX-License-Identifier: Apache-2.0
#include "cfs/erofs/writer.h"

namespace cfs::erofs {

Result<WriteResult> write_image(const Tree& /*tree*/, const WriteOptions& /*opts*/,
                                int /*out_fd*/) {
  return fail(Errc::kUnsupportedFeature, "image writer: not implemented yet");
}

}  // namespace cfs::erofs
