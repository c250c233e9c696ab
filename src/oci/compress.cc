// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/compress.h"

#include <zlib.h>
#include <zstd.h>

#include <vector>

namespace cfs::oci {
namespace {

constexpr std::size_t kOutChunk = 256u << 10;

class Passthrough final : public Compressor {
 public:
  explicit Passthrough(CompressedSink sink) : sink_(std::move(sink)) {}
  Status write(std::span<const std::byte> data) override { return sink_(data); }
  Status finish() override { return {}; }

 private:
  CompressedSink sink_;
};

class Gzip final : public Compressor {
 public:
  explicit Gzip(CompressedSink sink) : sink_(std::move(sink)), out_(kOutChunk) {
    // 16 + MAX_WBITS: a gzip header and trailer; level 6 is gzip's default.
    ok_ = deflateInit2(&z_, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~Gzip() override {
    if (ok_) deflateEnd(&z_);
  }
  Status write(std::span<const std::byte> data) override { return run(data, Z_NO_FLUSH); }
  Status finish() override { return run({}, Z_FINISH); }

 private:
  Status run(std::span<const std::byte> data, int flush) {
    if (!ok_) return fail(Errc::kInvalidInput, "gzip: cannot initialise zlib");
    // zlib takes non-const input but does not modify it.
    z_.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(data.data()));
    z_.avail_in = static_cast<uInt>(data.size());
    for (;;) {
      z_.next_out = reinterpret_cast<Bytef*>(out_.data());
      z_.avail_out = static_cast<uInt>(out_.size());
      const int rc = deflate(&z_, flush);
      if (rc == Z_STREAM_ERROR) return fail(Errc::kInvalidInput, "gzip: deflate failed");
      const std::size_t n = out_.size() - z_.avail_out;
      if (n > 0) CFS_TRY(sink_(std::span(out_.data(), n)));
      if (flush == Z_FINISH ? rc == Z_STREAM_END : z_.avail_in == 0 && z_.avail_out != 0) return {};
    }
  }

  CompressedSink sink_;
  std::vector<std::byte> out_;
  z_stream z_{};
  bool ok_ = false;
};

}  // namespace

ZstdCompressor::ZstdCompressor(CompressedSink sink, int level)
    : sink_(std::move(sink)), out_(ZSTD_CStreamOutSize()), cctx_(ZSTD_createCCtx()) {
  if (cctx_) ZSTD_CCtx_setParameter(static_cast<ZSTD_CCtx*>(cctx_), ZSTD_c_compressionLevel, level);
}
ZstdCompressor::~ZstdCompressor() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_)); }

Status ZstdCompressor::pledge_frame_size(std::uint64_t size) {
  if (!cctx_) return fail(Errc::kInvalidInput, "zstd: cannot create a context");
  const std::size_t rc = ZSTD_CCtx_setPledgedSrcSize(static_cast<ZSTD_CCtx*>(cctx_), size);
  if (ZSTD_isError(rc))
    return fail(Errc::kInvalidInput, std::string("zstd: ") + ZSTD_getErrorName(rc));
  return {};
}

Status ZstdCompressor::write(std::span<const std::byte> data) {
  if (data.empty()) return {};
  open_ = true;
  return run(data, ZSTD_e_continue);
}

Status ZstdCompressor::finish() {
  if (!open_) return {};
  open_ = false;
  return run({}, ZSTD_e_end);
}

Status ZstdCompressor::run(std::span<const std::byte> data, int mode) {
  if (!cctx_) return fail(Errc::kInvalidInput, "zstd: cannot create a context");
  const auto m = static_cast<ZSTD_EndDirective>(mode);
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  for (;;) {
    ZSTD_outBuffer out{out_.data(), out_.size(), 0};
    const std::size_t left = ZSTD_compressStream2(static_cast<ZSTD_CCtx*>(cctx_), &out, &in, m);
    if (ZSTD_isError(left))
      return fail(Errc::kInvalidInput, std::string("zstd: ") + ZSTD_getErrorName(left));
    if (out.pos > 0) CFS_TRY(sink_(std::span(out_.data(), out.pos)));
    if (m == ZSTD_e_end ? left == 0 : in.pos == in.size) return {};
  }
}

std::string_view layer_media_type(Compression c) noexcept {
  switch (c) {
    case Compression::kGzip:
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd:
      return "application/vnd.oci.image.layer.v1.tar+zstd";
    case Compression::kNone:
      break;
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

std::unique_ptr<Compressor> compressor(Compression c, CompressedSink sink) {
  switch (c) {
    case Compression::kGzip:
      return std::make_unique<Gzip>(std::move(sink));
    case Compression::kZstd:
      return std::make_unique<ZstdCompressor>(std::move(sink));
    case Compression::kNone:
      break;
  }
  return std::make_unique<Passthrough>(std::move(sink));
}

}  // namespace cfs::oci
