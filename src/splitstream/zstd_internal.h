// SPDX-License-Identifier: Apache-2.0
// libzstd contexts as RAII values, and the one compression setup splitstreams use.
#pragma once

#include <zstd.h>

#include <memory>
#include <string>

#include "cfs/util/result.h"

namespace cfs::splitstream::detail {

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const noexcept { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const noexcept { ZSTD_freeDCtx(d); }
};
using CCtx = std::unique_ptr<ZSTD_CCtx, CCtxFree>;
using DCtx = std::unique_ptr<ZSTD_DCtx, DCtxFree>;

/// Level 3, no content checksum: what composefs-rs' `Encoder::new(_, 0)` sets up.
Result<CCtx> make_cctx();

/// "what: zstd <error name>" for a libzstd error code.
inline Error zstd_error(const std::string& what, std::size_t code) {
  return Error(Errc::kCorruptImage, what + ": zstd: " + ZSTD_getErrorName(code));
}

}  // namespace cfs::splitstream::detail
