// SPDX-License-Identifier: Apache-2.0
#include "cfs/splitstream/reader.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "cfs/splitstream/format.h"
#include "cfs/util/sys.h"
#include "zstd_internal.h"

namespace cfs::splitstream {

namespace {

using detail::DCtx;

Result<DCtx> make_dctx() {
  DCtx d(ZSTD_createDCtx());
  if (!d) return fail(Errc::kInvalidInput, "zstd: cannot allocate a decompression context");
  return d;
}

struct Range {
  std::uint64_t start = 0;
  std::uint64_t end = 0;
  std::uint64_t size() const noexcept { return end - start; }
};

}  // namespace

std::string content_type_name(std::uint64_t code) {
  std::string s;
  for (int i = 0; i < 8; ++i) {
    auto c = static_cast<char>(code >> (8 * i));
    if (c < 0x20 || c > 0x7e) return fmt::format("0x{:016x}", code);
    s.push_back(c);
  }
  return s;
}

struct Reader::Impl {
  UniqueFd fd;
  std::string what;
  std::uint64_t file_size = 0;
  verity::HashAlg alg = verity::HashAlg::kSha256;
  bool old = false;
  std::uint64_t content_type = 0;
  std::uint64_t stream_size = 0;
  Range stream;
  std::vector<verity::Digest> stream_refs;
  std::vector<verity::Digest> object_refs;
  std::vector<std::pair<std::string, verity::Digest>> named;

  // Decoding the chunk stream.
  DCtx dctx;
  std::vector<std::byte> in;
  std::size_t in_pos = 0, in_len = 0;
  std::uint64_t file_pos = 0;  // next byte of the stream section to read
  std::vector<std::byte> out;
  std::size_t out_pos = 0, out_len = 0;
  std::size_t frame_left = 0;  // last ZSTD_decompressStream hint: 0 at a frame boundary
  bool decoded_all = false;

  std::optional<std::int64_t> peeked;  // a chunk header read but not yet acted on
  bool at_eof = false;                 // no chunk header left
  std::uint64_t inline_left = 0;       // bytes left in the current inline chunk
  std::uint64_t inline_total = 0;
  bool took_external = false;

  Error corrupt(const std::string& msg) const {
    return Error(Errc::kCorruptImage, what + ": splitstream: " + msg);
  }

  Result<Range> range(const FileRange& r, const char* field) const {
    Range rg{r.start.get(), r.end.get()};
    if (rg.start > rg.end || rg.end > file_size)
      return fail(corrupt(fmt::format("{} range [{}, {}) is outside the file of {} bytes", field,
                                      rg.start, rg.end, file_size)));
    return rg;
  }

  Result<std::string> read_range(const Range& r, const char* field) const {
    std::string s(r.size(), '\0');
    auto buf = std::as_writable_bytes(std::span(s.data(), s.size()));
    auto n = sys::pread_full(fd.get(), buf, r.start);
    if (!n) return fail(std::move(n).error().with_context(what));
    if (*n != s.size()) return fail(corrupt(fmt::format("{}: file shrank while reading", field)));
    return s;
  }

  Result<std::vector<verity::Digest>> digests(const Range& r, const char* field,
                                              std::uint64_t max_bytes) const {
    std::size_t ds = verity::digest_size(alg);
    if (r.size() % ds != 0)
      return fail(corrupt(fmt::format("{} section of {} bytes is not a multiple of {}-byte digests",
                                      field, r.size(), ds)));
    if (r.size() > max_bytes)
      return fail(corrupt(fmt::format("{} section of {} bytes exceeds the limit of {} bytes", field,
                                      r.size(), max_bytes)));
    CFS_ASSIGN(std::string raw, read_range(r, field));
    std::vector<verity::Digest> v(raw.size() / ds);
    for (std::size_t i = 0; i < v.size(); ++i) {
      v[i] = verity::Digest::zero(alg);
      std::memcpy(v[i].bytes.data(), raw.data() + i * ds, ds);
    }
    return v;
  }

  Status read_named(const Range& r, std::uint64_t max_bytes) {
    if (r.size() == 0) return {};
    CFS_ASSIGN(std::string z, read_range(r, "named_refs"));
    CFS_ASSIGN(auto d, make_dctx());
    std::string text;
    std::vector<char> buf(ZSTD_DStreamOutSize());
    ZSTD_inBuffer zin{z.data(), z.size(), 0};
    std::size_t ret = 0;
    for (;;) {
      ZSTD_outBuffer zout{buf.data(), buf.size(), 0};
      ret = ZSTD_decompressStream(d.get(), &zout, &zin);
      if (ZSTD_isError(ret))
        return fail(detail::zstd_error(what + ": splitstream named_refs", ret));
      text.append(buf.data(), zout.pos);
      if (text.size() > max_bytes)
        return fail(corrupt(fmt::format("named_refs decompress to more than {} bytes", max_bytes)));
      if (zin.pos == zin.size && zout.pos < zout.size) break;
    }
    if (ret != 0) return fail(corrupt("named_refs: truncated zstd data"));
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t nul = text.find('\0', pos);
      if (nul == std::string::npos)
        return fail(
            corrupt(fmt::format("named_refs: record at byte {} has no NUL terminator", pos)));
      std::string_view rec(text.data() + pos, nul - pos);
      std::size_t colon = rec.find(':');
      std::uint64_t idx = 0;
      bool ok = colon != std::string_view::npos && colon > 0 && colon <= 19;
      for (std::size_t i = 0; ok && i < colon; ++i) {
        if (rec[i] < '0' || rec[i] > '9') ok = false;
        idx = idx * 10 + static_cast<std::uint64_t>(rec[i] - '0');
      }
      if (!ok)
        return fail(
            corrupt(fmt::format("named_refs: record at byte {} is not \"index:name\"", pos)));
      if (idx >= stream_refs.size())
        return fail(corrupt(fmt::format("named_refs: '{}' refers to stream_refs[{}] of {}",
                                        rec.substr(colon + 1), idx, stream_refs.size())));
      named.emplace_back(std::string(rec.substr(colon + 1)), stream_refs[idx]);
      pos = nul + 1;
    }
    return {};
  }

  // --- the chunk stream ---

  /// Makes decoded bytes available in `out`; false at the end of the zstd data.
  Result<bool> decode_more() {
    if (decoded_all) return false;
    out_pos = out_len = 0;
    for (;;) {
      if (in_pos == in_len && file_pos < stream.end) {
        auto n =
            static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), stream.end - file_pos));
        auto r = sys::pread_full(fd.get(), std::span(in.data(), n), file_pos);
        if (!r) return fail(std::move(r).error().with_context(what));
        if (*r != n) return fail(corrupt("stream section: file shrank while reading"));
        file_pos += n;
        in_pos = 0;
        in_len = n;
      }
      ZSTD_inBuffer zin{in.data(), in_len, in_pos};
      ZSTD_outBuffer zout{out.data(), out.size(), 0};
      std::size_t ret = ZSTD_decompressStream(dctx.get(), &zout, &zin);
      if (ZSTD_isError(ret)) return fail(detail::zstd_error(what + ": splitstream stream", ret));
      bool progressed = zin.pos != in_pos || zout.pos > 0;
      in_pos = zin.pos;
      // Without progress the hint describes the next frame's header, not the last frame.
      if (progressed) frame_left = ret;
      if (zout.pos > 0) {
        out_len = zout.pos;
        return true;
      }
      if (in_pos == in_len && file_pos == stream.end && !progressed) {
        if (frame_left != 0) return fail(corrupt("stream section: truncated zstd data"));
        decoded_all = true;
        return false;
      }
    }
  }

  /// Reads up to buf.size() decoded bytes; fewer only at the end of the zstd data.
  Result<std::size_t> read_decoded(std::span<std::byte> buf) {
    std::size_t done = 0;
    while (done < buf.size()) {
      if (out_pos == out_len) {
        CFS_ASSIGN(bool more, decode_more());
        if (!more) break;
      }
      std::size_t n = std::min(buf.size() - done, out_len - out_pos);
      std::memcpy(buf.data() + done, out.data() + out_pos, n);
      out_pos += n;
      done += n;
    }
    return done;
  }

  /// The next chunk header (without consuming it); nullopt at the end of the stream.
  Result<std::optional<std::int64_t>> peek() {
    if (peeked) return peeked;
    if (at_eof) return std::optional<std::int64_t>{};
    std::array<std::byte, 8> b{};
    CFS_ASSIGN(std::size_t n, read_decoded(b));
    if (n == 0) {
      at_eof = true;
      return std::optional<std::int64_t>{};
    }
    if (n != 8)
      return fail(corrupt(fmt::format("stream ends inside a chunk header ({} of 8 bytes)", n)));
    std::uint64_t u = 0;
    for (std::size_t i = 0; i < 8; ++i)
      u |= std::uint64_t(static_cast<std::uint8_t>(b[i])) << (8 * i);
    auto v = static_cast<std::int64_t>(u);
    if (v < 0) {
      // -INT64_MIN does not fit an i64; as a size it exceeds any stream anyway.
      std::uint64_t len =
          v == INT64_MIN ? (std::uint64_t{1} << 63) : static_cast<std::uint64_t>(-v);
      if (len > stream_size || inline_total > stream_size - len)
        return fail(corrupt(
            fmt::format("inline chunk of {} bytes after {} inline bytes exceeds stream_size {}",
                        len, inline_total, stream_size)));
    } else if (static_cast<std::uint64_t>(v) >= object_refs.size()) {
      return fail(corrupt(
          fmt::format("external chunk refers to object_refs[{}] of {}", v, object_refs.size())));
    }
    peeked = v;
    return peeked;
  }

  Result<std::size_t> read_inline(std::span<std::byte> buf) {
    std::size_t done = 0;
    while (done < buf.size()) {
      if (inline_left == 0) {
        CFS_ASSIGN(auto h, peek());
        if (!h || *h >= 0) break;
        inline_left = *h == INT64_MIN ? (std::uint64_t{1} << 63) : static_cast<std::uint64_t>(-*h);
        peeked.reset();
      }
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(inline_left, buf.size() - done));
      CFS_ASSIGN(std::size_t n, read_decoded(buf.subspan(done, want)));
      if (n != want)
        return fail(corrupt(
            fmt::format("stream ends inside an inline chunk ({} bytes missing)", inline_left - n)));
      inline_left -= n;
      inline_total += n;
      done += n;
    }
    return done;
  }

  Result<std::optional<ExternalChunk>> next_external() {
    if (inline_left > 0) return std::optional<ExternalChunk>{};
    CFS_ASSIGN(auto h, peek());
    if (!h || *h < 0) return std::optional<ExternalChunk>{};
    peeked.reset();
    auto idx = static_cast<std::uint64_t>(*h);
    return std::optional<ExternalChunk>(ExternalChunk{idx, object_refs[idx]});
  }
};

Reader::Reader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Reader::Reader(Reader&&) noexcept = default;
Reader& Reader::operator=(Reader&&) noexcept = default;
Reader::~Reader() = default;

Result<Reader> Reader::open(UniqueFd fd, std::string what, const ReaderOptions& options) {
  auto m = std::make_unique<Impl>();
  m->fd = std::move(fd);
  m->what = std::move(what);
  CFS_ASSIGN(struct stat st, sys::fstat(m->fd.get(), m->what));
  m->file_size = static_cast<std::uint64_t>(st.st_size);
  if (m->file_size < sizeof(Header))
    return fail(m->corrupt(fmt::format("file of {} bytes is shorter than the {}-byte header",
                                       m->file_size, sizeof(Header))));
  std::array<std::byte, sizeof(Header)> raw{};
  CFS_TRY(sys::pread_full(m->fd.get(), raw, 0));
  Header h;
  std::memcpy(&h, raw.data(), sizeof h);
  if (h.magic != kMagic) {
    OldHeader o;
    std::memcpy(&o, raw.data(), sizeof o);
    if (o.magic != kMagic) return fail(m->corrupt("no \"SplitStream\" magic (not a splitstream)"));
    m->old = true;
    h.magic = o.magic;
    h.version = o.version;
    h.flags = o.flags;
    h.algorithm = o.algorithm;
    h.lg_blocksize = o.lg_blocksize;
    h.info = o.info;
  }
  if (h.version != kVersion)
    return fail(m->corrupt(fmt::format("unsupported version {} (expected 0)", h.version)));
  if (h.algorithm != static_cast<std::uint8_t>(verity::HashAlg::kSha256) &&
      h.algorithm != static_cast<std::uint8_t>(verity::HashAlg::kSha512))
    return fail(m->corrupt(fmt::format("unknown fs-verity algorithm {}", h.algorithm)));
  m->alg = static_cast<verity::HashAlg>(h.algorithm);
  if (options.algorithm && *options.algorithm != m->alg)
    return fail(Errc::kInvalidInput, fmt::format("{}: splitstream uses {}, expected {}", m->what,
                                                 verity::hash_alg_name(m->alg),
                                                 verity::hash_alg_name(*options.algorithm)));
  if (h.lg_blocksize != kLgBlockSize)
    return fail(m->corrupt(
        fmt::format("lg_blocksize {} is not supported (only 12, 4 KiB blocks)", h.lg_blocksize)));

  CFS_ASSIGN(Range info_range, m->range(h.info, "info"));
  if (info_range.size() < sizeof(Info))
    return fail(m->corrupt(fmt::format("info section of {} bytes is shorter than {} bytes",
                                       info_range.size(), sizeof(Info))));
  CFS_ASSIGN(std::string info_raw,
             m->read_range({info_range.start, info_range.start + sizeof(Info)}, "info"));
  Info info;
  std::memcpy(&info, info_raw.data(), sizeof info);
  m->content_type = info.content_type;
  m->stream_size = info.stream_size;
  if (options.content_type && *options.content_type != m->content_type)
    return fail(Errc::kInvalidInput, fmt::format("{}: splitstream content type is {}, expected {}",
                                                 m->what, content_type_name(m->content_type),
                                                 content_type_name(*options.content_type)));
  CFS_ASSIGN(Range srefs, m->range(info.stream_refs, "stream_refs"));
  CFS_ASSIGN(Range orefs, m->range(info.object_refs, "object_refs"));
  CFS_ASSIGN(Range named, m->range(info.named_refs, "named_refs"));
  CFS_ASSIGN(m->stream, m->range(info.stream, "stream"));
  CFS_ASSIGN(m->stream_refs, m->digests(srefs, "stream_refs", options.max_refs_bytes));
  CFS_ASSIGN(m->object_refs, m->digests(orefs, "object_refs", options.max_refs_bytes));
  CFS_TRY(m->read_named(named, options.max_named_refs_bytes));

  CFS_ASSIGN(m->dctx, make_dctx());
  m->in.resize(ZSTD_DStreamInSize());
  m->out.resize(ZSTD_DStreamOutSize());
  m->file_pos = m->stream.start;
  return Reader(std::move(m));
}

verity::HashAlg Reader::algorithm() const noexcept { return impl_->alg; }
std::uint64_t Reader::content_type() const noexcept { return impl_->content_type; }
std::uint64_t Reader::stream_size() const noexcept { return impl_->stream_size; }
bool Reader::old_header() const noexcept { return impl_->old; }
const std::vector<verity::Digest>& Reader::stream_refs() const noexcept {
  return impl_->stream_refs;
}
const std::vector<verity::Digest>& Reader::object_refs() const noexcept {
  return impl_->object_refs;
}
const std::vector<std::pair<std::string, verity::Digest>>& Reader::named_refs() const noexcept {
  return impl_->named;
}
std::optional<verity::Digest> Reader::named_ref(std::string_view name) const {
  std::optional<verity::Digest> found;
  for (const auto& [n, d] : impl_->named)
    if (n == name) found = d;
  return found;
}

Result<std::size_t> Reader::read_inline(std::span<std::byte> buf) {
  return impl_->read_inline(buf);
}

Result<std::optional<ExternalChunk>> Reader::next_external() {
  auto r = impl_->next_external();
  if (r && *r) impl_->took_external = true;
  return r;
}

Result<bool> Reader::at_end() {
  if (impl_->inline_left > 0) return false;
  CFS_ASSIGN(auto h, impl_->peek());
  return !h.has_value();
}

std::uint64_t Reader::inline_read() const noexcept { return impl_->inline_total; }

Status Reader::reassemble(const ObjectOpener& open, const ByteOutput& out) {
  Impl& m = *impl_;
  std::uint64_t produced = m.inline_total;
  std::vector<std::byte> buf(1u << 20);
  for (;;) {
    CFS_ASSIGN(std::size_t n, m.read_inline(buf));
    if (n > 0) {
      produced += n;
      CFS_TRY(out(std::span(buf.data(), n)));
      continue;
    }
    CFS_ASSIGN(auto ext, m.next_external());
    if (!ext) break;
    CFS_ASSIGN(UniqueFd obj, open(ext->digest));
    std::string name = fmt::format("{}: object {}", m.what, ext->digest.hex());
    for (std::uint64_t off = 0;;) {
      auto r = sys::pread_full(obj.get(), buf, off);
      if (!r) return fail(std::move(r).error().with_context(name));
      if (*r == 0) break;
      off += *r;
      produced += *r;
      if (produced > m.stream_size)
        return fail(
            m.corrupt(fmt::format("reassembled stream exceeds stream_size {} (at object {})",
                                  m.stream_size, ext->digest.hex())));
      CFS_TRY(out(std::span(buf.data(), *r)));
    }
  }
  if (!m.took_external && produced != m.stream_size)
    return fail(m.corrupt(
        fmt::format("reassembled {} bytes, stream_size says {}", produced, m.stream_size)));
  return {};
}

}  // namespace cfs::splitstream
