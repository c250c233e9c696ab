// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/decompress.h"

#include <fmt/format.h>
#include <isa-l/igzip_lib.h>
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "cfs/util/aligned_buffer.h"

namespace cfs::oci {

const char* compression_name(Compression c) noexcept {
  switch (c) {
    case Compression::kNone:
      return "none";
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
  }
  return "?";
}

Result<Compression> layer_compression(std::string_view mt) {
  for (std::string_view base : {"application/vnd.oci.image.layer.v1.tar",
                                "application/vnd.oci.image.layer.nondistributable.v1.tar"}) {
    if (mt == base) return Compression::kNone;
    if (mt.starts_with(base) && mt.substr(base.size()) == "+gzip") return Compression::kGzip;
    if (mt.starts_with(base) && mt.substr(base.size()) == "+zstd") return Compression::kZstd;
  }
  if (mt == "application/vnd.docker.image.rootfs.diff.tar") return Compression::kNone;
  if (mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
      mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
    return Compression::kGzip;
  if (mt == "application/vnd.docker.image.rootfs.diff.tar.zstd") return Compression::kZstd;
  return fail(Errc::kUnsupportedFeature, fmt::format("layer media type '{}' is not supported", mt));
}

Compression sniff_compression(std::span<const std::byte> h) {
  auto b = [&](std::size_t i) { return i < h.size() ? static_cast<std::uint8_t>(h[i]) : 0; };
  if (h.size() >= 2 && b(0) == 0x1f && b(1) == 0x8b) return Compression::kGzip;
  if (h.size() >= 4 && b(1) == 0xb5 && b(2) == 0x2f && b(3) == 0xfd && b(0) == 0x28)
    return Compression::kZstd;
  // Skippable frame: magic 0x184D2A50..0x184D2A5F, little-endian.
  if (h.size() >= 4 && (b(0) & 0xf0) == 0x50 && b(1) == 0x2a && b(2) == 0x4d && b(3) == 0x18)
    return Compression::kZstd;
  return Compression::kNone;
}

namespace {

constexpr std::size_t kInBuf = 256 * 1024;

/// Input buffering shared by the decoders: refills from the compressed source.
class Input {
 public:
  explicit Input(ByteSource& in) : in_(in) {}
  bool empty() const noexcept { return pos_ == len_; }
  bool eof() const noexcept { return eof_ && pos_ == len_; }
  std::byte* data() noexcept { return buf_.data() + pos_; }
  std::size_t size() const noexcept { return len_ - pos_; }
  void consume(std::size_t n) noexcept {
    pos_ += n;
    offset_ += n;
  }
  std::uint64_t offset() const noexcept { return offset_; }
  /// Refills when empty; false at the end of the input.
  Result<bool> fill() {
    if (pos_ < len_) return true;
    if (eof_) return false;
    CFS_ASSIGN(std::size_t n, in_.read(buf_));
    pos_ = 0;
    len_ = n;
    if (n == 0) eof_ = true;
    return n > 0;
  }
  /// Makes at least n bytes available (fewer only at the end of the input).
  Result<std::size_t> peek(std::size_t n) {
    while (size() < n && !eof_) {
      std::memmove(buf_.data(), buf_.data() + pos_, size());
      len_ -= pos_;
      pos_ = 0;
      CFS_ASSIGN(std::size_t got, in_.read(std::span(buf_).subspan(len_)));
      if (got == 0) eof_ = true;
      len_ += got;
    }
    return size();
  }

 private:
  ByteSource& in_;
  AlignedBuffer mem_{kInBuf};  // page-aligned: the kernel's copy into it is cheapest
  std::span<std::byte> buf_ = mem_.get(kInBuf);
  std::size_t pos_ = 0, len_ = 0;
  std::uint64_t offset_ = 0;
  bool eof_ = false;
};

/// Multi-member gzip: after each member, what follows must be another member or nothing.
class GzipBase : public ByteSource {
 public:
  GzipBase(ByteSource& in, std::string what) : in_(in), what_(std::move(what)) {}

  Result<std::size_t> read(std::span<std::byte> buf) override {
    if (buf.empty() || done_) return 0;
    for (;;) {
      if (between_members_) {
        CFS_ASSIGN(std::size_t n, in_.peek(2));
        if (n == 0) {
          if (members_ == 0) return corrupt("empty stream (no gzip member)");
          done_ = true;
          return 0;
        }
        auto* p = reinterpret_cast<const std::uint8_t*>(in_.data());
        if (n < 2 || p[0] != 0x1f || p[1] != 0x8b)
          return members_ == 0 ? corrupt("not gzip data")
                               : corrupt(fmt::format("{} bytes after gzip member {} are not "
                                                     "another member",
                                                     n, members_));
        CFS_TRY(start_member());
        between_members_ = false;
      }
      if (in_.empty()) CFS_TRY(in_.fill());
      bool at_end = in_.eof();
      CFS_ASSIGN(auto r, step(buf));
      if (r.member_end) {
        ++members_;
        between_members_ = true;
      }
      if (r.produced > 0) return r.produced;
      if (r.member_end) continue;
      if (at_end) return corrupt("truncated gzip stream (ends inside a member)");
    }
  }

 protected:
  struct Step {
    std::size_t produced = 0;
    bool member_end = false;
  };
  virtual Status start_member() = 0;
  virtual Result<Step> step(std::span<std::byte> out) = 0;
  tl::unexpected<Error> corrupt(const std::string& msg) const {
    return fail(Errc::kInvalidInput,
                fmt::format("{}: gzip: {} (at compressed byte {})", what_, msg, in_.offset()));
  }

  Input in_;
  std::string what_;
  std::uint64_t members_ = 0;
  bool between_members_ = true;
  bool done_ = false;
};

class IsalGzip final : public GzipBase {
 public:
  IsalGzip(ByteSource& in, std::string what)
      : GzipBase(in, std::move(what)), st_(std::make_unique<inflate_state>()) {}

 private:
  // isa-l's inflate keeps what it has read of a gzip header in locals, so a header split
  // between two calls is misread (intel/isa-l#224; decompress_fuzzer: a member with a name
  // and a header CRC, read in pieces, failed its CRC check). Its whole header is buffered
  // first; one cut short is left to inflate to report.
  Status start_member() override {
    auto at = [&](std::size_t i) { return static_cast<std::size_t>(in_.data()[i]); };
    std::size_t need = 10;
    CFS_ASSIGN(bool whole, buffered(need));
    const std::size_t flags = whole ? at(3) : 0;
    // RFC 1952 wants an error for a reserved flag, and zlib gives one; isa-l went on
    // (decompress_fuzzer: the engines disagreed).
    if ((flags & 0xe0) != 0) return corrupt("reserved gzip header flags set");
    if (whole && (flags & 4) != 0) {  // FEXTRA: a 2-byte length, then that many bytes
      CFS_ASSIGN(whole, buffered(need + 2));
      if (whole) {
        need += 2 + (at(need) | at(need + 1) << 8);
        CFS_ASSIGN(whole, buffered(need));
      }
    }
    for (std::size_t zero_terminated : {8u, 16u}) {  // FNAME, FCOMMENT
      if (!whole || (flags & zero_terminated) == 0) continue;
      do {
        CFS_ASSIGN(whole, buffered(need + 1));
      } while (whole && at(need++) != 0);
    }
    if (whole && (flags & 2) != 0) CFS_TRY(buffered(need + 2));  // FHCRC
    isal_inflate_init(st_.get());
    st_->crc_flag = ISAL_GZIP;
    return {};
  }
  /// Whether the next n bytes are buffered (false: the input ends first).
  Result<bool> buffered(std::size_t n) {
    if (n > kInBuf) return corrupt(fmt::format("gzip header of more than {} bytes", kInBuf));
    CFS_ASSIGN(std::size_t have, in_.peek(n));
    return have >= n;
  }
  Result<Step> step(std::span<std::byte> out) override {
    st_->next_in = reinterpret_cast<std::uint8_t*>(in_.data());
    st_->avail_in = static_cast<std::uint32_t>(in_.size());
    st_->next_out = reinterpret_cast<std::uint8_t*>(out.data());
    st_->avail_out = static_cast<std::uint32_t>(std::min<std::size_t>(out.size(), 1u << 30));
    std::uint32_t avail_out = st_->avail_out;
    int ret = isal_inflate(st_.get());
    in_.consume(in_.size() - st_->avail_in);
    if (ret < 0) {
      const char* why = ret == ISAL_INCORRECT_CHECKSUM ? "CRC or size mismatch"
                        : ret == ISAL_INVALID_WRAPPER  ? "bad gzip header"
                                                       : "corrupt deflate data";
      return corrupt(fmt::format("{} (isa-l error {})", why, ret));
    }
    return Step{avail_out - st_->avail_out, st_->block_state == ISAL_BLOCK_FINISH};
  }

  std::unique_ptr<inflate_state> st_;
};

class ZlibGzip final : public GzipBase {
 public:
  ZlibGzip(ByteSource& in, std::string what) : GzipBase(in, std::move(what)) {}
  ~ZlibGzip() override {
    if (init_) inflateEnd(&z_);
  }

 private:
  Status start_member() override {
    int r = init_ ? inflateReset(&z_) : inflateInit2(&z_, 16 + MAX_WBITS);
    if (r != Z_OK) return corrupt("zlib cannot start a member");
    init_ = true;
    return {};
  }
  Result<Step> step(std::span<std::byte> out) override {
    z_.next_in = reinterpret_cast<Bytef*>(in_.data());
    z_.avail_in = static_cast<uInt>(in_.size());
    z_.next_out = reinterpret_cast<Bytef*>(out.data());
    z_.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size(), 1u << 30));
    uInt avail_out = z_.avail_out;
    int r = inflate(&z_, Z_NO_FLUSH);
    in_.consume(in_.size() - z_.avail_in);
    if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR)
      return corrupt(fmt::format("{} (zlib {})", z_.msg ? z_.msg : "corrupt data", r));
    return Step{avail_out - z_.avail_out, r == Z_STREAM_END};
  }

  z_stream z_{};
  bool init_ = false;
};

class ZstdSource final : public ByteSource {
 public:
  ZstdSource(ByteSource& in, std::string what)
      : in_(in), what_(std::move(what)), d_(ZSTD_createDCtx()) {}
  ~ZstdSource() override { ZSTD_freeDCtx(d_); }

  Result<std::size_t> read(std::span<std::byte> buf) override {
    if (buf.empty() || done_) return 0;
    if (!d_) return fail(Errc::kInvalidInput, what_ + ": zstd: out of memory");
    for (;;) {
      if (in_.empty()) CFS_TRY(in_.fill());
      bool at_end = in_.eof();
      if (at_end && !started_) return corrupt("empty stream (no zstd frame)");
      started_ = true;
      ZSTD_inBuffer zin{in_.data(), in_.size(), 0};
      ZSTD_outBuffer zout{buf.data(), buf.size(), 0};
      std::size_t r = ZSTD_decompressStream(d_, &zout, &zin);
      in_.consume(zin.pos);
      if (ZSTD_isError(r)) return corrupt(ZSTD_getErrorName(r));
      // Without progress the hint describes the next frame, not the one that ended.
      if (zin.pos > 0 || zout.pos > 0) frame_left_ = r;
      if (zout.pos > 0) return zout.pos;
      if (at_end) {
        if (frame_left_ != 0) return corrupt("truncated zstd stream (ends inside a frame)");
        done_ = true;
        return 0;
      }
    }
  }

 private:
  tl::unexpected<Error> corrupt(const std::string& msg) const {
    return fail(Errc::kInvalidInput,
                fmt::format("{}: zstd: {} (at compressed byte {})", what_, msg, in_.offset()));
  }

  Input in_;
  std::string what_;
  ZSTD_DCtx* d_;
  std::size_t frame_left_ = 0;
  bool started_ = false;
  bool done_ = false;
};

class PrefixedSource final : public ByteSource {
 public:
  PrefixedSource(std::string prefix, ByteSource& in) : prefix_(std::move(prefix)), in_(in) {}
  Result<std::size_t> read(std::span<std::byte> buf) override {
    if (pos_ < prefix_.size()) {
      std::size_t n = std::min(buf.size(), prefix_.size() - pos_);
      std::memcpy(buf.data(), prefix_.data() + pos_, n);
      pos_ += n;
      return n;
    }
    return in_.read(buf);
  }

 private:
  std::string prefix_;
  std::size_t pos_ = 0;
  ByteSource& in_;
};

}  // namespace

std::unique_ptr<ByteSource> decompressor(Compression c, ByteSource& in, std::string what,
                                         GzipEngine engine) {
  switch (c) {
    case Compression::kGzip:
      if (engine == GzipEngine::kZlib) return std::make_unique<ZlibGzip>(in, std::move(what));
      return std::make_unique<IsalGzip>(in, std::move(what));
    case Compression::kZstd:
      return std::make_unique<ZstdSource>(in, std::move(what));
    case Compression::kNone:
      break;
  }
  return std::make_unique<PrefixedSource>(std::string(), in);
}

ZstdPushDecoder::ZstdPushDecoder(std::string what, Output out)
    : what_(std::move(what)),
      out_(std::move(out)),
      d_(ZSTD_createDCtx()),
      buf_(ZSTD_DStreamOutSize()) {}

ZstdPushDecoder::~ZstdPushDecoder() { ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(d_)); }

bool ZstdPushDecoder::decode_into(std::span<std::byte> dst) {
  // ZSTD_d_stableOutBuffer is ZSTD_d_experimentalParam2 outside ZSTD_STATIC_LINKING_ONLY.
  if (!d_ || started_ || dst.empty() ||
      ZSTD_isError(
          ZSTD_DCtx_setParameter(static_cast<ZSTD_DCtx*>(d_), ZSTD_d_experimentalParam2, 1)))
    return false;
  dst_ = dst_all_ = dst;
  dst_pos_ = 0;
  return true;
}

Status ZstdPushDecoder::write(std::span<const std::byte> in) {
  if (!d_) return fail(Errc::kInvalidInput, what_ + ": zstd: out of memory");
  if (in.empty()) return {};
  started_ = true;
  ZSTD_inBuffer zin{in.data(), in.size(), 0};
  if (!dst_.empty()) {
    for (;;) {
      ZSTD_outBuffer zout{dst_.data(), dst_.size(), dst_pos_};
      const std::size_t before = zin.pos;
      const std::size_t r = ZSTD_decompressStream(static_cast<ZSTD_DCtx*>(d_), &zout, &zin);
      offset_ += zin.pos - before;
      // A frame declaring more than is left of the buffer is refused at its header.
      if (ZSTD_isError(r) && ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
        return fail(Errc::kInvalidInput,
                    fmt::format("{}: zstd: more than the {} bytes expected (at compressed byte {})",
                                what_, dst_.size(), offset_));
      if (ZSTD_isError(r))
        return fail(Errc::kInvalidInput, fmt::format("{}: zstd: {} (at compressed byte {})", what_,
                                                     ZSTD_getErrorName(r), offset_));
      const std::size_t made = zout.pos - dst_pos_;
      if (zin.pos > before || made > 0) frame_left_ = r;
      if (made > 0) CFS_TRY(out_(dst_.subspan(dst_pos_, made)));
      dst_pos_ = zout.pos;
      if (r == 0 && zin.pos > before) {
        // The first frame is whole: any after it go through the window, as without dst.
        ZSTD_DCtx_reset(static_cast<ZSTD_DCtx*>(d_), ZSTD_reset_session_only);
        (void)ZSTD_DCtx_setParameter(static_cast<ZSTD_DCtx*>(d_), ZSTD_d_experimentalParam2, 0);
        dst_ = {};
        break;
      }
      if (zin.pos == zin.size) return {};
      if (zin.pos == before && made == 0)
        return fail(Errc::kInvalidInput,
                    fmt::format("{}: zstd: more than the {} bytes expected (at compressed byte {})",
                                what_, dst_.size(), offset_));
    }
  }
  // Until the input is consumed and the decoder holds no more output for it (a full output
  // buffer may leave some).
  for (;;) {
    ZSTD_outBuffer zout{buf_.data(), buf_.size(), 0};
    const std::size_t before = zin.pos;
    const std::size_t r = ZSTD_decompressStream(static_cast<ZSTD_DCtx*>(d_), &zout, &zin);
    offset_ += zin.pos - before;
    if (ZSTD_isError(r))
      return fail(Errc::kInvalidInput, fmt::format("{}: zstd: {} (at compressed byte {})", what_,
                                                   ZSTD_getErrorName(r), offset_));
    // Without progress the hint describes the next frame, not the one that ended.
    if (zin.pos > before || zout.pos > 0) frame_left_ = r;
    if (zout.pos > 0) CFS_TRY(out_(std::span(buf_.data(), zout.pos)));
    if (zin.pos == zin.size && zout.pos < zout.size) return {};
  }
}

Status ZstdPushDecoder::finish() const {
  if (!started_) return fail(Errc::kInvalidInput, what_ + ": zstd: empty stream (no zstd frame)");
  if (frame_left_ != 0)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: zstd: truncated zstd stream (ends inside a frame) (at compressed "
                            "byte {})",
                            what_, offset_));
  return {};
}

void ZstdPushDecoder::reset() {
  if (d_) ZSTD_DCtx_reset(static_cast<ZSTD_DCtx*>(d_), ZSTD_reset_session_only);
  offset_ = 0;
  frame_left_ = 0;
  if (d_ && !dst_all_.empty() && dst_.empty())
    (void)ZSTD_DCtx_setParameter(static_cast<ZSTD_DCtx*>(d_), ZSTD_d_experimentalParam2, 1);
  dst_ = dst_all_;
  dst_pos_ = 0;
  started_ = false;
}

std::unique_ptr<ByteSource> prefixed_source(std::string prefix, ByteSource& in) {
  return std::make_unique<PrefixedSource>(std::move(prefix), in);
}

}  // namespace cfs::oci
