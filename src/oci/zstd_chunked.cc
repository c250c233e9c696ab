// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/zstd_chunked.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <time.h>

#include <array>
#include <nlohmann/json.hpp>

#include "cfs/oci/digest.h"
#include "cfs/oci/tar.h"

namespace cfs::oci {
namespace {

std::string base64(std::span<const std::byte> data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}
std::string base64(std::string_view s) { return base64(std::as_bytes(std::span(s))); }

// A JSON string; invalid UTF-8 becomes U+FFFD as Go's encoder writes it.
std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool valid_utf8(std::string_view s) {
  try {
    (void)nlohmann::json(std::string(s)).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

// RFC 3339 in UTC with the fraction Go's time.RFC3339Nano prints (trailing zeros dropped).
std::string rfc3339(std::uint64_t sec, std::uint32_t nsec) {
  const time_t t = static_cast<time_t>(sec);
  struct tm tm {};
  gmtime_r(&t, &tm);
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", tm.tm_year + 1900,
                                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (nsec != 0) {
    std::string frac = fmt::format("{:09}", nsec);
    while (frac.back() == '0') frac.pop_back();
    out += "." + frac;
  }
  return out + "Z";
}

Result<std::string_view> toc_type(char typeflag, const std::string& what, const tar::Entry& e) {
  switch (typeflag) {
    case '0':
    case '\0':
    case '7':
      return "reg";
    case '1':
      return "hardlink";
    case '2':
      return "symlink";
    case '3':
      return "char";
    case '4':
      return "block";
    case '5':
      return "dir";
    case '6':
      return "fifo";
    default:
      return fail(Errc::kUnsupportedFeature,
                  fmt::format("{}: tar entry '{}' at byte {}: type '{}' has no zstd:chunked TOC "
                              "type",
                              what, e.path, e.offset, typeflag));
  }
}

// The layer's frames (ZstdCompressor) and the raw skippable frames between them, counted.
class FrameWriter {
 public:
  FrameWriter(CompressedSink sink, int level)
      : sink_(std::move(sink)),
        z_(
            [this](std::span<const std::byte> b) {
              emitted_ += b.size();
              return sink_(b);
            },
            level) {}
  std::uint64_t emitted() const noexcept { return emitted_; }
  Status begin_sized(std::uint64_t size) { return z_.pledge_frame_size(size); }
  Status write(std::span<const std::byte> data) { return z_.write(data); }
  /// Ends the open frame (nothing when no byte went into it).
  Status end() { return z_.finish(); }
  /// Raw bytes between frames.
  Status raw(std::span<const std::byte> data) {
    emitted_ += data.size();
    return sink_(data);
  }

 private:
  CompressedSink sink_;
  ZstdCompressor z_;
  std::uint64_t emitted_ = 0;
};

std::span<const std::byte> bytes_of(std::string_view s) { return std::as_bytes(std::span(s)); }

}  // namespace

std::uint64_t crc64_iso(std::uint64_t crc, std::span<const std::byte> data) noexcept {
  static const std::array<std::uint64_t, 256> table = [] {
    std::array<std::uint64_t, 256> t{};
    for (std::uint64_t i = 0; i < 256; ++i) {
      std::uint64_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xD800000000000000ull : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (std::byte b : data)
    crc = table[static_cast<std::uint8_t>(crc) ^ static_cast<std::uint8_t>(b)] ^ (crc >> 8);
  return ~crc;
}

struct ZstdChunkedWriter::Impl {
  enum class Mode { kHeaders, kData, kPadding, kTrailer };

  Impl(CompressedSink sink, std::string what_, int level_)
      : what(std::move(what_)),
        level(level_),
        frames(std::move(sink), level),
        split(
            [this](std::span<const std::byte> b) {
              split_hash.update(b);
              split_out.append(reinterpret_cast<const char*>(b.data()), b.size());
              return Status{};
            },
            level_) {}

  // Raw tar bytes that are not file data: into the current frame and the pending segment.
  Status raw_tar(std::span<const std::byte> b) {
    segment.append(reinterpret_cast<const char*>(b.data()), b.size());
    tar_offset += b.size();
    return frames.write(b);
  }

  Status split_line(const std::string& line) {
    split_size += line.size() + 1;
    CFS_TRY(split.write(bytes_of(line)));
    return split.write(bytes_of("\n"));
  }

  Status flush_segment() {
    if (segment.empty()) return {};
    CFS_TRY(split_line(fmt::format("{{\"type\":2,\"payload\":\"{}\",\"position\":{}}}",
                                   base64(segment), position++)));
    segment.clear();
    return {};
  }

  Status begin_entry(const tar::Entry& e) {
    CFS_ASSIGN(auto type, toc_type(e.typeflag, what, e));
    CFS_TRY(flush_segment());
    std::string& t = toc_entry;
    t = fmt::format("{{\"type\":\"{}\",\"name\":{}", type, json_string(e.path));
    if (!e.link_target.empty()) t += ",\"linkName\":" + json_string(e.link_target);
    if (e.mode) t += fmt::format(",\"mode\":{}", e.mode);
    if (e.size) t += fmt::format(",\"size\":{}", e.size);
    if (e.uid) t += fmt::format(",\"uid\":{}", e.uid);
    if (e.gid) t += fmt::format(",\"gid\":{}", e.gid);
    t += ",\"modtime\":\"" + rfc3339(e.mtime, e.mtime_nsec) + "\"";
    if (e.typeflag == '3' || e.typeflag == '4') {
      if (e.dev_major.value_or(0)) t += fmt::format(",\"devMajor\":{}", *e.dev_major);
      if (e.dev_minor.value_or(0)) t += fmt::format(",\"devMinor\":{}", *e.dev_minor);
    }
    if (!e.xattrs.empty()) {
      nlohmann::json x = nlohmann::json::object();
      for (const auto& [k, v] : e.xattrs) x[k] = base64(v);
      t += ",\"xattrs\":" + x.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    entry_name = e.path;
    data_left = e.is_regular() ? e.size : 0;
    pad_left = tar::padded(e.size) - e.size;
    if (data_left == 0) return end_entry();
    // The file's data is a frame of its own: end the headers' frame first.
    CFS_TRY(frames.end());
    CFS_TRY(frames.begin_sized(data_left));
    file = ChunkedFile{tar_offset, data_left, frames.emitted(), 0};
    crc = 0;
    content_hash = ContentHasher("sha256");
    mode = Mode::kData;
    return {};
  }

  Status end_entry() {
    std::string& t = toc_entry;
    std::string name_json = valid_utf8(entry_name) ? ",\"name\":" + json_string(entry_name)
                                                   : ",\"name_raw\":\"" + base64(entry_name) + "\"";
    std::string split_entry = "{\"type\":1" + name_json;
    if (file.size) {
      CFS_TRY(frames.end());
      file.length = frames.emitted() - file.offset;
      result.files.push_back(file);
      t += fmt::format(",\"digest\":\"{}\",\"offset\":{},\"endOffset\":{}",
                       content_hash.finish().str(), file.offset, frames.emitted());
      std::array<std::byte, 8> be{};
      for (std::size_t i = 0; i < 8; ++i) be[i] = static_cast<std::byte>(crc >> (56 - 8 * i));
      split_entry += fmt::format(",\"size\":{},\"payload\":\"{}\"", file.size, base64(be));
    } else {
      split_entry += ",\"payload\":null";
    }
    split_entry += fmt::format(",\"position\":{}}}", position++);
    CFS_TRY(split_line(split_entry));
    toc += (entries++ ? "," : "") + t + "}";
    file = ChunkedFile{};
    mode = pad_left ? Mode::kPadding : Mode::kHeaders;
    return {};
  }

  Status feed(std::span<const std::byte> in) {
    while (!in.empty()) {
      switch (mode) {
        case Mode::kData: {
          const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), data_left));
          const auto piece = in.first(n);
          crc = crc64_iso(crc, piece);
          content_hash.update(piece);
          CFS_TRY(frames.write(piece));
          tar_offset += n;
          data_left -= n;
          in = in.subspan(n);
          if (data_left == 0) CFS_TRY(end_entry());
          break;
        }
        case Mode::kPadding: {
          const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), pad_left));
          CFS_TRY(raw_tar(in.first(n)));
          pad_left -= n;
          in = in.subspan(n);
          if (pad_left == 0) mode = Mode::kHeaders;
          break;
        }
        case Mode::kTrailer:
          CFS_TRY(raw_tar(in));
          in = {};
          break;
        case Mode::kHeaders: {
          // Gather what the parser asks for, then hand the header bytes on.
          const std::size_t want = std::max<std::size_t>(need, tar::kBlockSize);
          const std::size_t n = std::min(in.size(), want - std::min(want, pending.size()));
          pending.append(reinterpret_cast<const char*>(in.data()), n);
          in = in.subspan(n);
          if (pending.size() < want) break;
          CFS_TRY(parse_pending());
          break;
        }
      }
    }
    return {};
  }

  Status parse_pending() {
    for (;;) {
      CFS_ASSIGN(auto ev, parser.parse(bytes_of(pending), tar_offset));
      switch (ev.kind) {
        case tar::EventKind::kNeedData:
          need = ev.need;
          if (pending.size() >= need) continue;
          return {};
        case tar::EventKind::kGlobal:
          return fail(Errc::kUnsupportedFeature,
                      fmt::format("{}: a pax global header at byte {} cannot be written as "
                                  "zstd:chunked",
                                  what, tar_offset));
        case tar::EventKind::kEnd:
        case tar::EventKind::kEntry: {
          need = 0;
          const std::string rest = pending.substr(ev.consumed);
          pending.resize(ev.consumed);
          const std::string headers = std::move(pending);
          pending.clear();
          CFS_TRY(raw_tar(bytes_of(headers)));
          if (ev.kind == tar::EventKind::kEnd) {
            mode = Mode::kTrailer;
          } else {
            CFS_TRY(begin_entry(ev.entry));
          }
          return feed(bytes_of(rest));
        }
      }
    }
  }

  Status skippable(std::span<const std::byte> data) {
    SkippableFrameHeader h;
    h.magic = kSkippableFrameMagic;
    h.size = static_cast<std::uint32_t>(data.size());
    CFS_TRY(frames.raw(std::as_bytes(std::span(&h, 1))));
    return frames.raw(data);
  }

  Result<ChunkedLayer> finish() {
    if (mode == Mode::kHeaders) {
      CFS_ASSIGN(auto ev, parser.at_eof(bytes_of(pending), tar_offset));
      (void)ev;  // a clean end: what is pending is the end blocks
      CFS_TRY(raw_tar(bytes_of(pending)));
      pending.clear();
    } else if (mode == Mode::kData) {
      return fail(Errc::kCorruptImage,
                  fmt::format("{}: the tar ends inside the data of '{}'", what, entry_name));
    }
    // A tar may also stop inside the last entry's padding (umoci 0.4.7 writes such layers;
    // oci/layer_stream.h accepts them): what is there is already in the frames.
    CFS_TRY(flush_segment());
    CFS_TRY(frames.end());
    CFS_TRY(split.end());
    const auto split_digest = split_hash.finish();

    const std::string toc_json = "{\"version\":1,\"entries\":[" + toc + "],\"tarSplitDigest\":\"" +
                                 split_digest.str() + "\"}";
    std::string toc_z;
    {
      FrameWriter z(
          [&](std::span<const std::byte> b) {
            toc_z.append(reinterpret_cast<const char*>(b.data()), b.size());
            return Status{};
          },
          level);
      CFS_TRY(z.write(bytes_of(toc_json)));
      CFS_TRY(z.end());
    }
    const std::uint64_t toc_offset = frames.emitted() + 8;
    CFS_TRY(skippable(bytes_of(toc_z)));
    const std::uint64_t split_offset = frames.emitted() + 8;
    CFS_TRY(skippable(bytes_of(split_out)));
    ZstdChunkedFooter footer;
    footer.toc_offset = toc_offset;
    footer.toc_length = toc_z.size();
    footer.toc_uncompressed = toc_json.size();
    footer.toc_type = kZstdChunkedTocType;
    footer.tar_split_offset = split_offset;
    footer.tar_split_length = split_out.size();
    footer.tar_split_uncompressed = split_size;
    footer.magic = kZstdChunkedFooterMagic;
    CFS_TRY(skippable(std::as_bytes(std::span(&footer, 1))));

    const std::string toc_checksum = sha256_of(std::string_view(toc_z)).str();
    const std::string toc_position =
        fmt::format("{}:{}:{}:{}", toc_offset, toc_z.size(), toc_json.size(), kZstdChunkedTocType);
    for (auto key : {kZstdChunkedManifestChecksum, kZstdChunkedLegacyManifestChecksum})
      result.annotations[std::string(key)] = toc_checksum;
    for (auto key : {kZstdChunkedManifestPosition, kZstdChunkedLegacyManifestPosition})
      result.annotations[std::string(key)] = toc_position;
    result.annotations[std::string(kZstdChunkedTarSplitPosition)] =
        fmt::format("{}:{}:{}", split_offset, split_out.size(), split_size);
    result.blob_size = frames.emitted();
    return std::move(result);
  }

  std::string what;
  int level = 3;
  FrameWriter frames;
  // The tar-split stream, compressed into memory (a few percent of the headers' size).
  ContentHasher split_hash{"sha256"};
  std::string split_out;
  std::uint64_t split_size = 0;
  FrameWriter split;

  tar::Parser parser;
  Mode mode = Mode::kHeaders;
  std::string pending;  // header bytes not yet parsed
  std::size_t need = 0;
  std::uint64_t tar_offset = 0;
  std::string segment;  // raw bytes since the last tar-split entry
  std::uint64_t position = 0;

  std::string toc;  // entries so far, comma-separated
  std::uint64_t entries = 0;
  std::string toc_entry;  // the current entry, without its closing brace
  std::string entry_name;
  std::uint64_t data_left = 0;
  std::uint64_t pad_left = 0;
  ChunkedFile file;
  std::uint64_t crc = 0;
  ContentHasher content_hash{"sha256"};
  ChunkedLayer result;
};

ZstdChunkedWriter::ZstdChunkedWriter(CompressedSink sink, std::string what, int level)
    : impl_(std::make_unique<Impl>(std::move(sink), std::move(what), level)) {}
ZstdChunkedWriter::~ZstdChunkedWriter() = default;

Status ZstdChunkedWriter::write(std::span<const std::byte> tar) { return impl_->feed(tar); }
Result<ChunkedLayer> ZstdChunkedWriter::finish() { return impl_->finish(); }

}  // namespace cfs::oci
