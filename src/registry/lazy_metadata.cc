// SPDX-License-Identifier: Apache-2.0
#include "cfs/registry/lazy_metadata.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "artifact.h"
#include "base64.h"
#include "cfs/erofs/reader.h"
#include "cfs/erofs/slim.h"
#include "cfs/oci/byte_source.h"
#include "cfs/oci/compress.h"
#include "cfs/oci/source.h"
#include "cfs/registry/image_source.h"
#include "cfs/tree/object_name.h"
#include "cfs/util/decimal.h"
#include "cfs/util/sys.h"
#include "registry/referrers_memo.h"

namespace cfs::registry {
namespace {

using Clock = std::chrono::steady_clock;

/// The largest index parsed before the EROFS that bounds it has arrived: ~35,000 SHA-512
/// objects (the Debian image's 5,189 take 1.1 MB), at most ~50 MB of parser memory.
constexpr std::uint64_t kEarlyIndexParse = 8ull << 20;

/// The longest zstd frame header (ZSTD_FRAMEHEADERSIZE_MAX, in zstd.h's static-only section).
constexpr std::size_t kZstdFrameHeaderMax = 18;

/// The zstd skippable frames of the metadata blobs (any zstd reader skips them: an older cfs and
/// `zstd -d` decode the same EROFS; RFC 8878 allows magics 0x184D2A50-5F, zstd:chunked's are
/// 0x184D2A50): the compact index after the EROFS's frame (since session 15), and the redirect
/// table before the slim EROFS's (since session 16).
constexpr std::uint32_t kCompactFrameMagic = 0x184D2A5E;
constexpr std::uint32_t kRedirectFrameMagic = 0x184D2A5D;
constexpr std::uint64_t kSkippableHeader = 8;

std::uint32_t le32_at(std::string_view b, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i)
    v |= std::uint32_t{static_cast<std::uint8_t>(b[at + i])} << (8 * i);
  return v;
}

verity::Digest erofs_digest(std::span<const std::byte> erofs, verity::HashAlg alg) {
  verity::Params p;
  p.alg = alg;
  return verity::digest_bytes(erofs, p);
}

/// `bytes` as one zstd frame (the metadata blobs cfs oci push attaches).
Result<std::string> compress(std::string_view bytes) {
  std::string out;
  oci::ZstdCompressor z([&out](std::span<const std::byte> piece) {
    out.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    return Status{};
  });
  // The frame then declares its size, and a mount decodes it into one buffer of that size.
  CFS_TRY(z.pledge_frame_size(bytes.size()));
  CFS_TRY(z.write(std::as_bytes(std::span(bytes.data(), bytes.size()))));
  CFS_TRY(z.finish());
  return out;
}

/// A metadata blob decoded (zstd) and, when asked, fs-verity-hashed while it downloads: the
/// EROFS's decompression and digest were a tail of 3-5 ms after its last byte, on the critical
/// path of every lazy mount. The bytes are not trusted before the client has checked the blob's
/// digest at its end, so a decoding error (or the size limit) is kept until then: a tampered or
/// truncated transfer is reported as a digest mismatch, as when the blob was decoded after it.
/// `limit` (may be null): a lower limit another thread may set while the blob downloads (the
/// index's size bound, known once the EROFS is): decoding stops at it.
/// `file` (>= 0): the decoded bytes go there (the EROFS's memfd, from offset 0) instead of into
/// a string: a large EROFS is held once, not in a string and then a memfd.
class MetadataSink final : public BlobSink {
 public:
  MetadataSink(bool zstd, std::uint64_t max, std::string what, std::optional<verity::HashAlg> alg,
               const std::atomic<std::uint64_t>* limit = nullptr, int file = -1,
               Clock::time_point* first_byte = nullptr)
      : max_(max), limit_(limit), file_(file), first_byte_(first_byte), what_(std::move(what)) {
    if (zstd) decoder_.emplace(what_, [this](std::span<const std::byte> b) { return plain(b); });
    if (alg) {
      params_.alg = *alg;
      hasher_.emplace(params_);
    }
  }

  /// Every piece as it arrives: the slim EROFS blob (~0.5 MB for the Debian image) is smaller
  /// than the client's default piece, so it came whole after its last byte, and its decoding,
  /// rebuild and digest (a 2 MB EROFS: 3-6 ms) followed the transfer on every lazy mount's way to
  /// `serving` instead of overlapping it.
  std::size_t gather_bytes() const override { return 0; }

  /// The blob (of `blob_size` bytes) ends with `tail` bytes that are not decoded but kept apart
  /// (take_tail()): the compact index's skippable frame after the EROFS's frame.
  void set_tail(std::uint64_t blob_size, std::uint64_t tail) {
    blob_size_ = blob_size;
    tail_len_ = tail;
  }
  std::string take_tail() { return std::move(tail_); }

  /// The blob starts with `head` bytes that are not decoded: the slim EROFS's redirect table
  /// (erofs/slim.h) in its skippable frame. Once they are in, each value the table lists is
  /// rebuilt in what is hashed as the EROFS's bytes pass, and in the EROFS itself at finish().
  void set_head(std::uint64_t head) { head_len_ = head; }

  /// What the refusal past `max` says the limit is (after "more than the N bytes allowed").
  void set_max_why(std::string why) { max_why_ = std::move(why); }

  Status write(std::span<const std::byte> data) override {
    // The first bytes' time, before any work on them (a retry keeps the first attempt's).
    if (first_byte_ && *first_byte_ == Clock::time_point{}) *first_byte_ = Clock::now();
    if (head_.size() < head_len_) {
      const std::uint64_t take = std::min<std::uint64_t>(head_len_ - head_.size(), data.size());
      head_.append(reinterpret_cast<const char*>(data.data()), take);
      received_ += take;
      data = data.subspan(take);
      if (head_.size() == head_len_ && !error_) {
        if (auto t = redirect_table(); t)
          rebuilder_.emplace(std::move(*t), what_ + ": redirect table");
        else
          error_ = std::move(t).error();
      }
      if (data.empty()) return {};
    }
    if (tail_len_) {
      // The bytes from the tail's start on are kept as they are (the client checks the whole
      // blob's digest), the rest decoded.
      const std::uint64_t split = blob_size_ - std::min(tail_len_, blob_size_);
      const std::uint64_t keep =
          received_ < split ? std::min<std::uint64_t>(split - received_, data.size()) : 0;
      received_ += data.size();
      tail_.append(reinterpret_cast<const char*>(data.data()) + keep, data.size() - keep);
      data = data.first(keep);
      if (data.empty()) return {};
    }
    if (error_) return {};
    // A frame that declares its size (cfs oci push's, since session 13) is decoded straight
    // into one buffer of that size (the string, padded for the index's in-place parse, or the
    // memfd through a mapping): growing a string as the bytes came copied them and faulted in
    // each larger buffer's pages, and the decoder's own window (up to the blob's size) was
    // faulted in and copied out of. Only within the limits, and a string up to kEarlyIndexParse,
    // so that a declared size takes nothing the bytes could not, and no more than an honest
    // index needs (past it, or when libzstd cannot, the bytes come through a window as before).
    if (decoder_ && !sized_) {
      // The frame's header whole first: after the redirect table's frame (or a piece cut short
      // by the link) the first piece may end inside it, and the EROFS would not be decoded in
      // place.
      if (header_.size() + data.size() < kZstdFrameHeaderMax) {
        header_.append(reinterpret_cast<const char*>(data.data()), data.size());
        return {};
      }
      if (!header_.empty()) {
        header_.append(reinterpret_cast<const char*>(data.data()), data.size());
        data = std::as_bytes(std::span(header_));
      }
      sized_ = true;  // by the first piece, which holds the frame's header (a restart keeps it)
      const auto n = ZSTD_getFrameContentSize(data.data(), data.size());
      if (n != ZSTD_CONTENTSIZE_UNKNOWN && n != ZSTD_CONTENTSIZE_ERROR && n > 0 &&
          n <= std::min(max_, limit_ ? limit_->load() : max_))
        decode_in_place(n);
    }
    Status st = decoder_ ? decoder_->write(data) : plain(data);
    if (!st) error_ = std::move(st).error();
    header_.clear();
    return {};
  }

  Status restart() override {
    // In place, the buffer keeps its size and is written again from its start.
    if (!in_place_) out_.clear();
    if (file_ >= 0 && !map_) CFS_TRY(sys::ftruncate(file_, 0, what_));
    size_ = 0;
    received_ = 0;
    tail_.clear();
    head_.clear();
    header_.clear();
    rebuilder_.reset();
    error_.reset();
    if (decoder_) decoder_->reset();
    if (hasher_) hasher_.emplace(params_);
    return {};
  }

  /// After the fetch succeeded (the blob's digest checked): the decoded bytes (empty when they
  /// went to `file`).
  Result<std::string> finish() {
    if (!error_ && decoder_ && !header_.empty()) {
      // A blob shorter than a frame header: decoded (and refused) as it is.
      sized_ = true;
      if (Status st = decoder_->write(std::as_bytes(std::span(header_))); !st)
        error_ = std::move(st).error();
      header_.clear();
    }
    if (!error_ && decoder_)
      if (Status st = decoder_->finish(); !st) error_ = std::move(st).error();
    if (!error_ && head_.size() < head_len_)
      error_ = Error(Errc::kInvalidInput, what_ + ": shorter than its redirect table's frame");
    if (!error_ && rebuilder_)
      if (Status st = rebuilder_->finish(); !st) error_ = std::move(st).error();
    if (error_) return fail(std::move(*error_));
    // Decoded in place, the EROFS itself is rebuilt only now: until the frame's end the decoder
    // may read it as its window. (Through a window, the rebuilt pieces were written.)
    if (in_place_ && rebuilder_) {
      const std::size_t n = std::min(size_, in_place_);
      erofs::RedirectTable placed = rebuilder_->table();
      std::erase_if(placed.entries,
                    [&](const auto& e) { return e.value + placed.value_size() > n; });
      const auto whole =
          map_ ? std::span(map_->p, n) : std::as_writable_bytes(std::span(out_.data(), n));
      CFS_TRY(erofs::rebuild_redirects(whole, placed, what_ + ": redirect table"));
    }
    if (in_place_) {
      // The frame's end checked its declared size; fewer bytes (frames after it can only add)
      // would leave the buffer's tail, so it is cut to what was decoded all the same.
      if (map_) {
        map_.reset();  // no writable mapping may remain when the memfd is sealed
        if (size_ < in_place_) CFS_TRY(sys::ftruncate(file_, size_, what_));
      } else {
        out_.resize(size_);
      }
    }
    return std::move(out_);
  }

  /// The fs-verity digest of the decoded bytes (when an algorithm was given); after finish().
  std::optional<verity::Digest> digest() {
    if (!hasher_) return std::nullopt;
    return hasher_->finish();
  }

 private:
  /// The redirect table of the blob's first frame (head_), decoded and parsed strictly.
  Result<erofs::RedirectTable> redirect_table() {
    const std::string what = what_ + ": redirect table";
    if (head_.size() < kSkippableHeader || le32_at(head_, 0) != kRedirectFrameMagic ||
        le32_at(head_, 4) != head_.size() - kSkippableHeader)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: the blob does not start with the {}-byte skippable frame its "
                              "annotation {} announces",
                              what, head_.size() - std::min(head_.size(), kSkippableHeader),
                              kRedirectTableAnnotation));
    MetadataSink sink(true, kMaxRedirectTable, what, std::nullopt);
    CFS_TRY(sink.write(std::as_bytes(std::span(head_)).subspan(kSkippableHeader)));
    CFS_ASSIGN(const std::string doc, sink.finish());
    // Bounded by the largest EROFS fetched; each value is checked to lie within the EROFS as
    // it arrives (finish()).
    return erofs::parse_redirect_table(doc, max_, what);
  }

  Status plain(std::span<const std::byte> b) {
    const std::uint64_t limit = limit_ ? limit_->load() : max_;
    if (size_ + b.size() > std::min(max_, limit))
      return fail(Errc::kInvalidInput,
                  limit < max_
                      ? fmt::format("{}: more than the {} bytes an index of its image can "
                                    "take (its objects counted)",
                                    what_, limit)
                      : fmt::format("{}: more than the {} bytes allowed{}", what_, max_, max_why_));
    const bool placed = size_ < in_place_;
    if (placed) {
      // The first frame, decoded where it belongs (frames after it come through the window).
      std::byte* at = (map_ ? map_->p : reinterpret_cast<std::byte*>(out_.data())) + size_;
      if (b.data() != at || b.size() > in_place_ - size_)
        return fail(Errc::kInvalidInput, what_ + ": zstd: output out of place");
    }
    // What is hashed (and written, through a window) is the piece as rebuilt.
    if (rebuilder_) {
      CFS_ASSIGN(b, rebuilder_->feed(b));
    }
    if (!placed) {
      if (file_ >= 0)
        CFS_TRY(sys::pwrite_all(file_, b, size_));
      else
        out_.append(reinterpret_cast<const char*>(b.data()), b.size());
    }
    size_ += b.size();
    if (hasher_) hasher_->update(b);
    return {};
  }

  std::uint64_t max_;
  std::uint64_t blob_size_ = 0, tail_len_ = 0, received_ = 0, head_len_ = 0;
  std::string tail_, head_, header_;
  std::optional<erofs::RedirectRebuilder> rebuilder_;
  const std::atomic<std::uint64_t>* limit_;
  int file_;
  Clock::time_point* first_byte_;
  /// The decoder writes into the string (resized to `n`) or into the memfd (truncated to `n`,
  /// mapped); nothing changes when it cannot.
  void decode_in_place(std::uint64_t n) {
    if (file_ < 0) {
      if (n > kEarlyIndexParse) return;
      out_.reserve(n + ocirepo::kObjectIndexPadding);
      out_.resize(n);
      if (decoder_->decode_into(std::as_writable_bytes(std::span(out_.data(), n))))
        in_place_ = n;
      else
        out_.clear();
      return;
    }
    if (!sys::ftruncate(file_, n, what_)) return;
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, file_, 0);
    if (p == MAP_FAILED) {
      (void)sys::ftruncate(file_, 0, what_);
      return;
    }
    map_.reset(new Mapping{static_cast<std::byte*>(p), n});
    if (decoder_->decode_into(std::span(map_->p, n))) {
      in_place_ = n;
    } else {
      map_.reset();
      (void)sys::ftruncate(file_, 0, what_);
    }
  }

  struct Mapping {
    std::byte* p;
    std::size_t n;
    ~Mapping() { ::munmap(p, n); }
  };

  std::uint64_t size_ = 0;
  bool sized_ = false;
  std::uint64_t in_place_ = 0;  // the size decoded into in place, 0: not in place
  std::unique_ptr<Mapping> map_;
  std::string what_;
  std::string max_why_;
  std::optional<oci::ZstdPushDecoder> decoder_;
  std::optional<verity::Hasher> hasher_;
  verity::Params params_;
  std::string out_;
  std::optional<Error> error_;
};

/// When a metadata blob's first and last bytes arrived, for LinkEstimate and the trace.
struct BlobTimes {
  Clock::time_point first_byte{}, last_byte{};
};

/// A metadata blob (digest-checked by the client), decompressed when its media type says zstd
/// (as it arrives); refused past `max` bytes either way. `times`: set to when its first and last
/// bytes arrived. `alg`: also its fs-verity digest in that algorithm, into `digest`. `tail`: the
/// blob's last bytes not decoded but returned in `tail_out` (SkippableTail). `max_why`: what
/// the refusal past `max` says of it.
Result<std::string> fetch_small(Client& client, const Reference& repo, const oci::Descriptor& d,
                                bool zstd, std::uint64_t max, const std::string& what,
                                BlobTimes* times = nullptr,
                                std::optional<verity::HashAlg> alg = std::nullopt,
                                std::optional<verity::Digest>* digest = nullptr,
                                const std::atomic<std::uint64_t>* limit = nullptr, int file = -1,
                                std::uint64_t tail = 0, std::string* tail_out = nullptr,
                                std::uint64_t head = 0, std::string max_why = {}) {
  if (d.size > max)
    return fail(Errc::kInvalidInput, fmt::format("{}: {} of {} bytes is larger than the {} allowed",
                                                 what, d.media_type, d.size, max));
  MetadataSink sink(zstd, max, what, alg, limit, file, times ? &times->first_byte : nullptr);
  sink.set_max_why(std::move(max_why));
  if (tail) sink.set_tail(d.size, tail);
  if (head) sink.set_head(head);
  CFS_TRY(client.fetch_blob(repo, BlobFetch{d.digest, d.size, &sink}, {}));
  if (times) times->last_byte = Clock::now();
  CFS_ASSIGN(std::string out, sink.finish());
  if (digest) *digest = sink.digest();
  if (tail_out) *tail_out = sink.take_tail();
  return out;
}

/// The EROFS blob as fetch_small() fetches it, decoded into a memfd (FetchedErofs), sealed once
/// whole.
Result<FetchedErofs> fetch_erofs(Client& client, const Reference& repo, const oci::Descriptor& d,
                                 const std::string& what, BlobTimes* times,
                                 std::optional<verity::HashAlg> alg,
                                 std::optional<verity::Digest>* digest, std::uint64_t tail = 0,
                                 std::string* tail_out = nullptr, std::uint64_t head = 0) {
  FetchedErofs out;
  CFS_ASSIGN(out.fd, sys::memfd_create("composefs-image"));
  const bool zstd = d.media_type == kErofsZstdMediaType || d.media_type == kErofsSlimMediaType;
  const std::uint64_t max = lazy_erofs_limit(d.size, zstd);
  CFS_TRY(fetch_small(client, repo, d, zstd, max, what, times, alg, digest, nullptr, out.fd.get(),
                      tail, tail_out, head,
                      zstd && max < kMaxLazyErofsSize
                          ? fmt::format(" ({} times its blob's {} bytes, or {} MiB)",
                                        kLazyErofsRatio, d.size, kLazyErofsFloor >> 20)
                          : std::string())
              .map([](std::string) {}));
  // Sealed before it is mapped or handed on: from here on nothing can change the bytes that
  // were hashed, through any descriptor or mapping.
  CFS_TRY(sys::seal_readonly(out.fd.get()));
  CFS_ASSIGN(out.map, MappedFile::map_fd(out.fd.get(), what));
  return out;
}

// The index must describe exactly the blobs of the image it is attached to.
Status check_layers(const ocirepo::ObjectIndex& index, const oci::ResolvedImage& image,
                    const std::string& what) {
  if (index.layers.size() != image.layers.size())
    return fail(Errc::kInvalidInput, fmt::format("{}: the index lists {} layers, the image has {}",
                                                 what, index.layers.size(), image.layers.size()));
  for (std::size_t i = 0; i < index.layers.size(); ++i) {
    const auto& a = index.layers[i];
    const auto& b = image.layers[i];
    if (a.digest != b.blob.digest || a.size != b.blob.size || a.media_type != b.blob.media_type ||
        a.diff_id != b.diff_id)
      return fail(
          Errc::kInvalidInput,
          fmt::format("{}: layers[{}] is {} ({} bytes, {}, diff_id {}), the image's is {} "
                      "({} bytes, {}, diff_id {})",
                      what, i, a.digest.str(), a.size, a.media_type, a.diff_id.str(),
                      b.blob.digest.str(), b.blob.size, b.blob.media_type, b.diff_id.str()));
  }
  return {};
}

// The seal rule: a sealed image is served only from the EROFS its seal names. `computed` is the
// EROFS's digest with the index's algorithm; the other algorithm's is computed only when needed.
// `sealed`: the image's referrers (listed once with the lazy metadata) include a seal.
Result<std::optional<Seal>> check_seal(Client& client, const Reference& image, bool sealed,
                                       std::span<const std::byte> erofs,
                                       const verity::Digest& computed,
                                       const LazyFetchOptions& options) {
  // The common case, an image without seals, costs no request of its own.
  if (!options.require_seal && !options.cert_file && !sealed) return std::optional<Seal>{};
  const verity::HashAlg other = computed.alg == verity::HashAlg::kSha512 ? verity::HashAlg::kSha256
                                                                         : verity::HashAlg::kSha512;
  std::optional<Error> missing;
  for (verity::HashAlg a : {computed.alg, other}) {
    auto s = verify_seal(client, image, a == computed.alg ? computed : erofs_digest(erofs, a),
                         options.cert_file);
    if (s) return std::make_optional(std::move(*s));
    if (!s.error().is(Errc::kObjectMissing)) return fail(std::move(s).error());
    if (!missing) missing = std::move(s).error();
  }
  // verify_seal() with a certificate ignores unsigned seals; without one it saw none at all.
  if (options.require_seal || options.cert_file) return fail(std::move(*missing));
  return std::optional<Seal>{};
}

/// The loader graph document from the artifact config's "data" (the blob's bytes, base64),
/// decoded as the blob would be; nullopt when the descriptor has none (the blob is fetched).
/// The bytes must be the blob the descriptor names (OCI image-spec: "data" is verified against
/// the digest and size), else kInvalidInput naming `what`.
Result<std::optional<Result<std::string>>> embedded_graph(const oci::Manifest& m,
                                                          const std::string& what) {
  using Out = std::optional<Result<std::string>>;
  const auto j = nlohmann::json::parse(m.raw, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("config") || !j["config"].is_object())
    return Out();
  const auto& c = j["config"];
  auto data = c.find("data");
  if (data == c.end()) return Out();
  if (!data->is_string()) return fail(Errc::kInvalidInput, what + ": config.data is not a string");
  if (data->get_ref<const std::string&>().size() > (kMaxEmbeddedLoaderGraph + 2) / 3 * 4)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: config.data is more than the {} bytes allowed", what,
                            kMaxEmbeddedLoaderGraph));
  auto bytes = base64_decode(data->get_ref<const std::string&>());
  if (!bytes) return fail(Errc::kInvalidInput, what + ": config.data is not base64");
  if (bytes->size() != m.config.size || oci::sha256_of(*bytes) != m.config.digest)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: config.data is not the blob its digest and size name ({} bytes, "
                            "{})",
                            what, bytes->size(), oci::sha256_of(*bytes).str()));
  MetadataSink sink(true, kMaxLoaderGraphSize, what, std::nullopt);
  CFS_TRY(sink.write(std::as_bytes(std::span(bytes->data(), bytes->size()))));
  return Out(sink.finish());
}

/// The image config the artifact carries (kLazyConfigAnnotation), adopted into `image` once its
/// bytes are the blob the image manifest's config descriptor names (else kDigestMismatch: a
/// mount never serves from a config other than the image's); false when it carries none.
Result<bool> embedded_config(const oci::Manifest& m, oci::ResolvedImage& image,
                             const std::string& what) {
  auto a = m.annotations.find(std::string(kLazyConfigAnnotation));
  if (a == m.annotations.end()) return false;
  const std::string field = fmt::format("{}: annotation {}", what, kLazyConfigAnnotation);
  if (a->second.size() > (kMaxEmbeddedConfig + 2) / 3 * 4)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: more than the {} bytes allowed", field, kMaxEmbeddedConfig));
  auto bytes = base64_decode(a->second);
  if (!bytes) return fail(Errc::kInvalidInput, field + ": not base64");
  CFS_TRY(oci::adopt_config(image, std::move(*bytes), field));
  return true;
}

/// A zstd skippable frame (kCompactFrameMagic, kRedirectFrameMagic) holding `payload`.
std::string skippable_frame(std::uint32_t magic, std::string_view payload) {
  std::string out(kSkippableHeader, '\0');
  const std::uint32_t size = static_cast<std::uint32_t>(payload.size());
  for (int i = 0; i < 4; ++i) {
    out[static_cast<std::size_t>(i)] = static_cast<char>(magic >> (8 * i));
    out[static_cast<std::size_t>(4 + i)] = static_cast<char>(size >> (8 * i));
  }
  out.append(payload);
  return out;
}

/// The size of a frame payload the EROFS layer's annotation `key` announces (decimal bytes, 1
/// to `max`), 0 when it has none: the compact index's (kLazyIndexAnnotation) at the blob's end,
/// the redirect table's (kRedirectTableAnnotation) at a slim blob's start. `others`: the bytes
/// of the blob's other such frames, which the EROFS's frame must leave room for.
Result<std::uint64_t> announced_frame(const oci::Descriptor& erofs, std::string_view key,
                                      std::uint64_t max, std::uint64_t others,
                                      const std::string& what) {
  auto a = erofs.annotations.find(std::string(key));
  if (a == erofs.annotations.end()) return std::uint64_t{0};
  const std::string field = fmt::format("{}: EROFS annotation {}", what, key);
  const auto& v = a->second;
  const auto parsed = parse_decimal_u64(v);
  if (!parsed || (v.size() > 1 && v[0] == '0'))
    return fail(Errc::kInvalidInput, fmt::format("{}: '{}' is not a byte count", field, v));
  const std::uint64_t n = *parsed;
  if (n == 0 || n > max)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: {} bytes is not 1 to the {} allowed", field, n, max));
  if ((erofs.media_type != kErofsZstdMediaType && erofs.media_type != kErofsSlimMediaType) ||
      n + kSkippableHeader + others >= erofs.size)
    return fail(Errc::kInvalidInput, fmt::format("{}: {} bytes cannot be a frame of a {} blob of "
                                                 "{} bytes",
                                                 field, n, erofs.media_type, erofs.size));
  return n;
}

/// The payload of the frame the EROFS blob ended with (`tail`, its last 8 + n bytes).
Result<std::string> compact_payload(std::string tail, std::uint64_t n, const std::string& what) {
  auto le32 = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i)
      v |= std::uint32_t{static_cast<std::uint8_t>(tail[at + i])} << (8 * i);
    return v;
  };
  if (tail.size() != n + kSkippableHeader || le32(0) != kCompactFrameMagic || le32(4) != n)
    return fail(Errc::kInvalidInput,
                fmt::format("{}: the EROFS blob does not end with the {}-byte skippable frame its "
                            "annotation {} announces",
                            what, n, kLazyIndexAnnotation));
  tail.erase(0, kSkippableHeader);
  return tail;
}

/// Whether a lazy mount takes an EROFS of `erofs_size` bytes from a zstd blob of `blob_size`
/// bytes (the bound a mount applies while it decodes: lazy_erofs_limit).
bool mountable(std::uint64_t erofs_size, std::uint64_t blob_size) {
  return erofs_size <= lazy_erofs_limit(blob_size, true);
}

}  // namespace

Result<oci::ContentDigest> push_lazy_metadata(Client& client, const Reference& image,
                                              std::string_view erofs,
                                              const ocirepo::ObjectIndex& index,
                                              const LoaderGraph* graph,
                                              std::optional<std::string_view> config_bytes) {
  // The blobs are built before anything is asked of the registry: metadata a mount would
  // refuse is refused before a request is sent.
  if (erofs_digest(std::as_bytes(std::span(erofs.data(), erofs.size())), index.algorithm) !=
      index.image)
    return fail(Errc::kDigestMismatch,
                image.str() + ": the EROFS is not the index's image " + index.image.str());
  CFS_ASSIGN(std::string erofs_z, compress(erofs));
  CFS_ASSIGN(const std::string index_z, compress(ocirepo::encode_object_index(index)));
  // The compact index after the EROFS's frame, in a skippable frame the EROFS layer's annotation
  // announces (kLazyIndexAnnotation): a mount then fetches no blob but the EROFS before it
  // serves, and the artifact's manifest stays small (its round trip is the link's probe).
  std::uint64_t compact_size = 0;
  std::string compact_z;
  {
    CFS_ASSIGN_CTX(auto img,
                   erofs::Image::from_bytes(std::as_bytes(std::span(erofs.data(), erofs.size()))),
                   image.str() + ": EROFS");
    CFS_ASSIGN(const std::string compact, ocirepo::encode_compact_index(index, img));
    CFS_ASSIGN(compact_z, compress(compact));
    if (compact_z.size() <= kMaxEmbeddedIndex) {
      erofs_z += skippable_frame(kCompactFrameMagic, compact_z);
      compact_size = compact_z.size();
    }
  }
  if (!mountable(erofs.size(), erofs_z.size()))
    return fail(Errc::kInvalidInput,
                fmt::format("{}: lazy metadata not attached: the merged EROFS is {} bytes and its "
                            "blob {} bytes, and a lazy mount decodes at most {} bytes from such a "
                            "blob ({} times its size, or {} MiB, never more than {} MiB); push it "
                            "with --no-lazy-metadata",
                            image.str(), erofs.size(), erofs_z.size(),
                            lazy_erofs_limit(erofs_z.size(), true), kLazyErofsRatio,
                            kLazyErofsFloor >> 20, kMaxLazyErofsSize >> 20));
  // The slim EROFS blob (kLazySlimArtifactType): the redirect table's frame, the EROFS with the
  // redirects' hex zeroed, the compact index's frame. Only when there is something to slim and
  // the rebuild gives the EROFS back (it always does: erofs/slim.h; a mount checks it anyway).
  std::string slim_z;
  std::uint64_t table_size = 0;
  if (compact_size) {
    const auto bytes = std::as_bytes(std::span(erofs.data(), erofs.size()));
    CFS_ASSIGN_CTX(auto slim, erofs::slim_redirects(bytes), image.str() + ": EROFS");
    const std::string doc = erofs::encode_redirect_table(slim.table);
    std::string rebuilt = slim.erofs;
    if (!slim.table.entries.empty() && doc.size() <= kMaxRedirectTable &&
        erofs::rebuild_redirects(std::as_writable_bytes(std::span(rebuilt.data(), rebuilt.size())),
                                 slim.table, "rebuild") &&
        rebuilt == erofs) {
      CFS_ASSIGN(const std::string table_z, compress(doc));
      CFS_ASSIGN(const std::string slim_erofs_z, compress(slim.erofs));
      if (table_z.size() <= kMaxRedirectTable) {
        slim_z = skippable_frame(kRedirectFrameMagic, table_z) + slim_erofs_z +
                 skippable_frame(kCompactFrameMagic, compact_z);
        table_size = table_z.size();
      }
      // Its zeroed hex compresses better than the v1 blob's: a slim blob a mount would refuse
      // is left out (a mount then takes the v1 artifact, which it accepts: checked above).
      if (!mountable(erofs.size(), slim_z.size())) slim_z.clear();
    }
  }
  CFS_ASSIGN(auto subject, client.get_manifest(image));
  CFS_ASSIGN(auto m, oci::parse_manifest(subject.bytes, image.str()));
  if (m.layers.size() != index.layers.size())
    return fail(Errc::kInvalidInput, image.str() + ": the index does not list its layers");
  for (std::size_t i = 0; i < m.layers.size(); ++i)
    if (m.layers[i].digest != index.layers[i].digest)
      return fail(Errc::kInvalidInput,
                  fmt::format("{}: layer {} is {}, the index's is {}", image.str(), i,
                              m.layers[i].digest.str(), index.layers[i].digest.str()));
  const auto erofs_bytes = std::as_bytes(std::span(erofs_z.data(), erofs_z.size()));
  const auto index_bytes = std::as_bytes(std::span(index_z.data(), index_z.size()));
  CFS_ASSIGN(auto erofs_d, detail::push_bytes(client, image, erofs_bytes));
  CFS_ASSIGN(auto index_d, detail::push_bytes(client, image, index_bytes));
  auto erofs_json = detail::descriptor_json(kErofsZstdMediaType, erofs_d, erofs_z.size());
  erofs_json["annotations"] = {{merged_seal_annotation(index.algorithm), index.image.hex()}};
  if (compact_size)
    erofs_json["annotations"][std::string(kLazyIndexAnnotation)] = std::to_string(compact_size);
  auto layers = nlohmann::json::array(
      {erofs_json, detail::descriptor_json(kObjectIndexZstdMediaType, index_d, index_z.size())});
  std::optional<nlohmann::json> config;
  if (graph && !graph->empty()) {
    CFS_ASSIGN(const std::string graph_z, compress(encode_loader_graph(*graph)));
    CFS_ASSIGN(auto graph_d,
               detail::push_bytes(client, image,
                                  std::as_bytes(std::span(graph_z.data(), graph_z.size()))));
    config = detail::descriptor_json(kLoaderGraphZstdMediaType, graph_d, graph_z.size());
    // Also in the descriptor itself (OCI 1.1 "data"), so that a mount reads it from the
    // artifact's manifest instead of asking for one more blob on its way to serving. The blob
    // is still pushed: a registry checks that a manifest's blobs exist, and a reader without
    // "data" fetches it.
    if (graph_z.size() <= kMaxEmbeddedLoaderGraph) (*config)["data"] = base64_encode(graph_z);
  }
  // The image config in the artifact's manifest (kLazyConfigAnnotation): no config GET either.
  nlohmann::json annotations = nlohmann::json::object();
  if (m.is_image() && m.config.size <= kMaxEmbeddedConfig) {
    // A push has the bytes it just uploaded: fetching them back would cost a request and show
    // as a download in the push's progress.
    if (config_bytes &&
        (config_bytes->size() != m.config.size || oci::sha256_of(*config_bytes) != m.config.digest))
      return fail(Errc::kInvalidInput, fmt::format("{}: the config given is not the manifest's {}",
                                                   image.str(), m.config.digest.str()));
    std::string fetched;
    if (!config_bytes) {
      CFS_ASSIGN(fetched, fetch_small(client, image, m.config, false, kMaxEmbeddedConfig,
                                      image.str() + " config"));
    }
    annotations[std::string(kLazyConfigAnnotation)] =
        base64_encode(config_bytes ? *config_bytes : std::string_view(fetched));
  }
  const std::optional<nlohmann::json> slim_config = config;
  const nlohmann::json slim_annotations = annotations;
  CFS_ASSIGN(auto pushed,
             detail::put_artifact(client, image, subject, kLazyArtifactType, std::move(layers),
                                  std::move(config), std::move(annotations)));
  // The slim artifact after it, so that it is listed as the newest: a mount since session 16
  // takes it, a cfs before lists only the v1 one. Its config and annotations are the v1 one's.
  if (!slim_z.empty()) {
    CFS_ASSIGN(
        auto slim_d,
        detail::push_bytes(client, image, std::as_bytes(std::span(slim_z.data(), slim_z.size()))));
    auto slim_json = detail::descriptor_json(kErofsSlimMediaType, slim_d, slim_z.size());
    slim_json["annotations"] = {
        {merged_seal_annotation(index.algorithm), index.image.hex()},
        {std::string(kLazyIndexAnnotation), std::to_string(compact_size)},
        {std::string(kRedirectTableAnnotation), std::to_string(table_size)}};
    CFS_TRY(detail::put_artifact(client, image, subject, kLazySlimArtifactType,
                                 nlohmann::json::array({std::move(slim_json)}), slim_config,
                                 slim_annotations)
                .map([](auto) {}));
  }
  return pushed.digest;
}

Result<LazyMetadata> fetch_lazy_metadata(Client& client, std::string_view reference,
                                         const LazyFetchOptions& options) {
  CFS_ASSIGN(auto found, find_lazy_metadata(client, reference, options));
  if (auto* none = std::get_if<NoLazyMetadata>(&found))
    return fail(Errc::kObjectMissing,
                fmt::format("{} (manifest {}) has no lazy metadata: use cfs oci pull, or push it "
                            "with cfs oci push --compression=zstd-chunked or none",
                            reference, none->manifest.str()));
  return std::move(std::get<LazyMetadata>(found));
}

namespace {

/// The image's referrers for a lazy mount. On a registry the repository remembers as one without
/// the referrers API (referrers_memo.h), the fallback tag first: one request instead of the API's
/// 404 and then the tag. The API is still asked when that tag is missing or lists no lazy
/// metadata (a registry that has the API since makes no tag for its pushes), and first whenever a
/// seal is required (one pushed since an upgrade is listed by the API only). What the API
/// answers is remembered (absent) or forgotten (present).
Result<Referrers> list_referrers(Client& client, const Reference& image,
                                 const oci::ContentDigest& subject,
                                 const LazyFetchOptions& options) {
  const auto now = std::chrono::system_clock::now();
  const bool tag_first = options.memo && !options.require_seal && !options.cert_file &&
                         detail::remembers_no_referrers_api(*options.memo, image.registry, now);
  Referrers refs;
  if (tag_first) {
    CFS_ASSIGN(refs, client.list_referrers(image, subject, "", ReferrersOrder::kTagThenApi));
    const bool lazy = std::any_of(refs.manifests.begin(), refs.manifests.end(),
                                  [](auto& d) { return d.artifact_type == kLazyArtifactType; });
    if (!lazy && !refs.from_api && !refs.no_api) {  // a tag without lazy metadata: ask the API
      CFS_ASSIGN(auto api, client.list_referrers(image, subject, "", ReferrersOrder::kApiOnly));
      const bool none = api.no_api;
      if (api.from_api) refs = std::move(api);
      refs.no_api = none;
    }
  } else {
    CFS_ASSIGN(refs, client.list_referrers(image, subject, ""));
  }
  if (options.memo && (refs.no_api || refs.from_api))
    detail::remember_referrers_api(*options.memo, image.registry, refs.no_api, now);
  return refs;
}

}  // namespace

std::uint64_t lazy_erofs_limit(std::uint64_t blob_size, bool zstd) {
  if (!zstd) return kMaxLazyErofsSize;  // every byte held is a byte the registry sent
  // No overflow: a blob larger than kMaxLazyErofsSize is refused before its bytes are asked.
  const std::uint64_t ratio = std::min(blob_size, kMaxLazyErofsSize) * kLazyErofsRatio;
  return std::min(kMaxLazyErofsSize, std::max(kLazyErofsFloor, ratio));
}

Result<std::variant<LazyMetadata, NoLazyMetadata>> find_lazy_metadata(
    Client& client, std::string_view reference, const LazyFetchOptions& options) {
  auto trace = [&](std::string_view event) {
    if (options.trace) options.trace(event);
  };
  CFS_ASSIGN(auto ref, parse_reference(reference));
  CFS_ASSIGN(auto source, open_registry_source(client, reference));
  CFS_ASSIGN(auto image, oci::resolve_manifest(*source, options.platform));
  trace("manifest");
  const Reference by_digest = ref.with_digest(image.manifest.digest.str());
  // The config (its diff_ids, checked against the index's below) downloads beside the metadata
  // blobs, once the artifact is known: it was a round trip of its own on the critical path of
  // every lazy mount (a registry answers a blob GET more slowly than a manifest GET). Not
  // earlier: the artifact manifest's request is the round trip the link estimate measures, and a
  // request beside it made it up to 20x longer (the neighbour budget up to 1 MiB, loaded). The
  // thread writes only image.config and image.layers, read after it is joined.
  std::optional<Status> config;
  std::jthread config_fetch;
  auto config_done = [&]() -> Status {
    if (config_fetch.joinable()) config_fetch.join();
    if (!config) config = oci::resolve_config(*source, image);
    return std::move(*config);
  };
  // Every referrer in one listing: the lazy metadata, and whether there are seals to check (a
  // listing is two requests on a registry without the referrers API, which is on the critical
  // path of every lazy mount).
  CFS_ASSIGN(auto refs, list_referrers(client, by_digest, image.manifest.digest, options));
  trace("referrers");
  const oci::Descriptor* newest = nullptr;
  bool sealed = false;
  // The newest artifact: the fallback index and the referrers API both list it last. Of either
  // type: a push since session 16 lists its slim artifact after its v1 one, and a v1 artifact
  // listed after that (an older cfs pushing the image again) is the newest and taken.
  for (const auto& d : refs.manifests) {
    if (d.artifact_type == kLazyArtifactType || d.artifact_type == kLazySlimArtifactType)
      newest = &d;
    sealed = sealed || d.artifact_type == kSealArtifactType;
  }
  if (!newest) {
    CFS_TRY(config_done());  // as for any image: a bad config is an error, not a full pull
    return NoLazyMetadata{image.manifest.digest};
  }
  const oci::ContentDigest artifact = newest->digest;
  const std::string what = fmt::format("lazy metadata {} of {}", artifact.str(), reference);
  const auto asked = Clock::now();
  CFS_ASSIGN(auto raw, client.get_manifest(by_digest.with_digest(artifact.str())));
  const std::chrono::duration<double> round_trip = Clock::now() - asked;
  const std::uint64_t manifest_bytes = raw.bytes.size();
  CFS_ASSIGN(auto m, oci::parse_manifest(std::move(raw.bytes), what));
  // The image config: carried by the artifact (a push since session 15), checked against the
  // image manifest's descriptor here; else its blob downloads beside the metadata blobs.
  CFS_ASSIGN(const bool config_embedded, embedded_config(m, image, what));
  if (config_embedded)
    config = Status{};
  else
    config_fetch = std::jthread([&] {
      config = oci::resolve_config(*source, image);
      trace("config");
    });
  trace("lazy artifact");
  if (m.artifact_type != newest->artifact_type)
    return fail(Errc::kInvalidInput, fmt::format("{}: artifactType is '{}', listed as '{}'", what,
                                                 m.artifact_type, newest->artifact_type));
  // The slim artifact (kLazySlimArtifactType): one layer, the slim EROFS blob, which starts with
  // the redirect table and ends with the compact index.
  const bool slim = m.artifact_type == kLazySlimArtifactType;
  if (!m.subject || m.subject->digest != image.manifest.digest)
    return fail(Errc::kInvalidInput, what + ": its subject is not the image manifest");
  const oci::Descriptor* erofs_d = nullptr;
  const oci::Descriptor* index_d = nullptr;
  for (const auto& l : m.layers) {
    const std::string_view type = l.media_type;
    const oci::Descriptor** slot =
        slim ? (type == kErofsSlimMediaType ? &erofs_d : nullptr)
        : type == kErofsMediaType || type == kErofsZstdMediaType                      ? &erofs_d
        : type == ocirepo::kObjectIndexMediaType || type == kObjectIndexZstdMediaType ? &index_d
                                                                                      : nullptr;
    if (!slot)
      return fail(Errc::kInvalidInput, what + ": unexpected layer of media type " + l.media_type);
    if (*slot) return fail(Errc::kInvalidInput, what + ": two EROFS or two index layers");
    *slot = &l;
  }
  // The compact index the EROFS blob ends with, when its annotation announces one (a push since
  // session 15): no index blob to fetch.
  std::uint64_t compact_size = 0, table_size = 0;
  if (erofs_d) {
    CFS_ASSIGN(compact_size,
               announced_frame(*erofs_d, kLazyIndexAnnotation, kMaxEmbeddedIndex, 0, what));
    if (slim) {
      CFS_ASSIGN(table_size, announced_frame(*erofs_d, kRedirectTableAnnotation, kMaxRedirectTable,
                                             compact_size + kSkippableHeader, what));
    }
  }
  if (slim && (!erofs_d || !compact_size || !table_size))
    return fail(Errc::kInvalidInput,
                fmt::format("{}: needs one layer of {} annotated {} and {}", what,
                            kErofsSlimMediaType, kLazyIndexAnnotation, kRedirectTableAnnotation));
  if (!erofs_d || (!index_d && !compact_size))
    return fail(Errc::kInvalidInput,
                fmt::format("{}: needs one layer of {} (or {}) and one of {} (or {})", what,
                            kErofsZstdMediaType, kErofsMediaType, kObjectIndexZstdMediaType,
                            ocirepo::kObjectIndexMediaType));

  // The loader graph, when the artifact's config is one (an older push's is the empty
  // descriptor): small, fetched beside the EROFS and the index, parsed once the index is.
  const bool has_graph = m.config.media_type == kLoaderGraphZstdMediaType;
  const std::string graph_what = fmt::format("{}: loader graph {}", what, m.config.digest.str());
  std::optional<Result<std::string>> graph_json;
  if (has_graph) {
    CFS_ASSIGN(graph_json, embedded_graph(m, graph_what));
  }

  LazyMetadata out;
  out.artifact = artifact;
  // The algorithm of the digest the artifact's annotation gives the EROFS (sha512 when it names
  // both): the EROFS is hashed with it while it downloads, and the index's size bound counts
  // digests of its width (when the annotation names none, the widest: the EROFS is refused
  // below anyway).
  std::optional<verity::HashAlg> annotated;
  for (auto a : {verity::HashAlg::kSha512, verity::HashAlg::kSha256})
    if (!annotated && erofs_d->annotations.count(merged_seal_annotation(a))) annotated = a;
  const verity::HashAlg bound_alg = annotated.value_or(verity::HashAlg::kSha512);
  const std::string index_what =
      compact_size ? fmt::format("{}: compact index of EROFS blob {}", what, erofs_d->digest.str())
                   : fmt::format("{}: index {}", what, index_d->digest.str());
  std::string compact_tail;
  // The index's size bound (ocirepo::object_index_size_bound, issue 15): an index is parsed
  // only once the EROFS it describes is fetched and matches its annotation, and only when it is
  // no larger than an index of that image's objects can be, so that a registry cannot make the
  // mount spend the parser's working memory (2-6 bytes per index byte, up to 256 MiB of index)
  // on a padded document. Set by the EROFS fetch as soon as it is done: an index still arriving
  // is cut there rather than decoded whole.
  std::atomic<std::uint64_t> index_limit{ocirepo::kMaxObjectIndexSize};
  // The EROFS downloads while the index is fetched: they are the two longest steps before a
  // lazy mount can serve (the client is safe to share between threads).
  std::optional<Result<FetchedErofs>> erofs;
  std::optional<verity::Digest> early_digest;
  std::optional<Result<ocirepo::ObjectIndex>> early_index;
  BlobTimes erofs_times, index_times, graph_times;
  const auto blobs_asked = Clock::now();
  {
    std::jthread graph_fetch;
    if (has_graph && !graph_json)
      graph_fetch = std::jthread([&] {
        graph_json = fetch_small(client, by_digest, m.config, true, kMaxLoaderGraphSize, graph_what,
                                 &graph_times);
        trace("loader graph fetched");
      });
    std::jthread erofs_fetch([&] {
      erofs = fetch_erofs(client, by_digest, *erofs_d, what + ": EROFS", &erofs_times, annotated,
                          &early_digest, compact_size ? compact_size + kSkippableHeader : 0,
                          &compact_tail, table_size ? table_size + kSkippableHeader : 0);
      trace("erofs fetched");
      // Only an EROFS that is what its annotation names bounds the index (a sealed image's
      // EROFS is fixed by its seal, its index is not).
      if (*erofs && early_digest &&
          early_digest->hex() == erofs_d->annotations.at(merged_seal_annotation(*annotated)))
        if (auto n = ocirepo::max_image_objects((*erofs)->bytes(), bound_alg))
          index_limit = std::min(
              ocirepo::kMaxObjectIndexSize,
              ocirepo::object_index_size_bound(bound_alg, *n, image.manifest.layers.size()));
    });
    // A compact index comes with the EROFS: the only blob to wait for.
    if (compact_size) {
      erofs_fetch.join();
    } else {
      CFS_ASSIGN(out.index_json, fetch_small(client, by_digest, *index_d,
                                             index_d->media_type == kObjectIndexZstdMediaType,
                                             ocirepo::kMaxObjectIndexSize, index_what, &index_times,
                                             std::nullopt, nullptr, &index_limit));
      trace("index fetched");
    }
    // An index of an honest size is parsed here, while the EROFS may still be arriving (it
    // usually is: the index is the smaller blob), instead of after it: the parse (~2 ms for the
    // Debian image's 1.1 MB) left the critical path in session 11 and would be back on it. The
    // bound below still applies before the result is used, so a padded index is refused as
    // before; what an early parse can cost is bounded by kEarlyIndexParse, not by the index.
    if (!compact_size && index_limit.load() == ocirepo::kMaxObjectIndexSize &&
        out.index_json.size() <= kEarlyIndexParse) {
      early_index =
          ocirepo::parse_object_index(out.index_json, what + ": index", out.index_json.capacity());
      trace("index parsed early");
    }
  }
  CFS_ASSIGN(out.erofs, std::move(*erofs));
  if (!annotated)
    return fail(Errc::kDigestMismatch,
                fmt::format("{}: the EROFS has no annotation {} or {} naming its fs-verity digest",
                            what, merged_seal_annotation(verity::HashAlg::kSha512),
                            merged_seal_annotation(verity::HashAlg::kSha256)));
  {
    const std::string key = merged_seal_annotation(*annotated);
    if (!early_digest || early_digest->hex() != erofs_d->annotations.at(key))
      return fail(Errc::kDigestMismatch,
                  fmt::format("{}: the EROFS's fs-verity digest is {}, its annotation {} names {}",
                              what, early_digest ? early_digest->str() : "unknown", key,
                              erofs_d->annotations.at(key)));
  }
  CFS_ASSIGN_CTX(const std::uint64_t image_objects,
                 ocirepo::max_image_objects(out.erofs.bytes(), bound_alg), what + ": EROFS");
  if (compact_size) {
    CFS_ASSIGN(const std::string compact_z,
               compact_payload(std::move(compact_tail), compact_size, index_what));
    // Decoded under the size bound of an index of this EROFS's objects (the JSON index's rule),
    // and completed from the EROFS, which is what its annotation names by now.
    const std::uint64_t bound = std::min(
        ocirepo::kMaxObjectIndexSize,
        ocirepo::compact_index_size_bound(bound_alg, image_objects, image.manifest.layers.size()));
    MetadataSink sink(true, bound, index_what, std::nullopt);
    CFS_TRY(sink.write(std::as_bytes(std::span(compact_z.data(), compact_z.size()))));
    CFS_ASSIGN(out.index_json, sink.finish());
    CFS_ASSIGN(auto img, erofs::Image::open_fd(out.erofs.fd.get(), what + ": EROFS"));
    CFS_ASSIGN(out.index,
               ocirepo::parse_compact_index(out.index_json, img, index_what, early_digest));
    out.compact_index = true;
  } else {
    CFS_TRY(ocirepo::check_object_index_size(out.index_json.size(), bound_alg, image_objects,
                                             image.manifest.layers.size(), index_what));
    if (!early_index)
      early_index =
          ocirepo::parse_object_index(out.index_json, what + ": index", out.index_json.capacity());
    CFS_ASSIGN(out.index, std::move(*early_index));
  }
  trace("index parsed");
  if (has_graph) {
    CFS_ASSIGN(out.loader_graph_json, std::move(*graph_json));
    CFS_ASSIGN(out.loader_graph,
               parse_loader_graph(out.loader_graph_json, out.index.objects.size(), graph_what));
    trace("loader graph parsed");
  }
  CFS_TRY(config_done());
  CFS_TRY(check_layers(out.index, image, what));
  // The blobs (the EROFS, and the index when it is one) shared the link from blobs_asked until
  // the later one's last byte; one round trip of that was the requests themselves.
  const std::chrono::duration<double> both =
      (compact_size ? erofs_times.last_byte
                    : std::max(erofs_times.last_byte, index_times.last_byte)) -
      blobs_asked;
  const std::uint64_t blob_bytes = erofs_d->size + (compact_size ? 0 : index_d->size);
  out.link.round_trip_s = round_trip.count();
  if (both.count() > round_trip.count())
    out.link.bytes_per_s = static_cast<double>(blob_bytes) / (both.count() - round_trip.count());
  if (options.trace) {
    // With each blob GET's first byte: what a blob request waited for here (sent together with
    // the config's, while this process decodes), for reading the budget (docs/design.md).
    std::string firsts;
    for (const BlobTimes* t : {&erofs_times, &index_times, &graph_times})
      if (t->first_byte != Clock::time_point{})
        firsts += fmt::format(
            " {:.2f}",
            std::chrono::duration<double, std::milli>(t->first_byte - blobs_asked).count());
    trace(fmt::format("link: round trip {:.2f} ms ({} bytes), {:.1f} MB/s, first bytes{} ms",
                      out.link.round_trip_s * 1e3, manifest_bytes, out.link.bytes_per_s / 1e6,
                      firsts));
  }
  const auto computed = early_digest && early_digest->alg == out.index.algorithm
                            ? *early_digest
                            : erofs_digest(out.erofs.bytes(), out.index.algorithm);
  trace("erofs digest");
  if (computed != out.index.image)
    return fail(Errc::kDigestMismatch, fmt::format("{}: the EROFS's fs-verity digest is {}, the "
                                                   "index names {}",
                                                   what, computed.str(), out.index.image.str()));
  const std::string key = merged_seal_annotation(out.index.algorithm);
  auto a = erofs_d->annotations.find(key);
  if (a == erofs_d->annotations.end() || a->second != computed.hex())
    return fail(
        Errc::kDigestMismatch,
        fmt::format("{}: the EROFS's fs-verity digest is {}, its annotation {} names {}", what,
                    computed.str(), key, a == erofs_d->annotations.end() ? "none" : a->second));
  CFS_ASSIGN(out.seal, check_seal(client, by_digest, sealed, out.erofs.bytes(), computed, options));
  if (sealed) trace("seal");
  out.manifest = std::move(image.manifest);
  out.config = std::move(image.config);
  return out;
}

}  // namespace cfs::registry
