// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/layer_stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "cfs/util/aligned_buffer.h"

namespace cfs::oci {

namespace {

/// `e` in the layer `what`, unless it already names it (the decompressor below the tar was
/// given `what` too).
Error in_layer(Error e, const std::string& what) {
  if (e.context().starts_with(what)) return e;
  return std::move(e).with_context(what);
}

/// The tar being split: a buffered window over the source, with its archive offset. The
/// buffer starts at 1 MiB and grows (up to `max`) only for large extension headers.
class TarInput {
 public:
  TarInput(ByteSource& in, std::size_t max) : in_(in), max_(max) {}

  std::span<const std::byte> window() const { return {buf_.data() + pos_, len_ - pos_}; }
  std::size_t available() const { return len_ - pos_; }
  std::uint64_t offset() const { return offset_; }
  bool eof() const { return eof_; }

  /// Makes `want` bytes available (fewer only at the end of the input).
  Status fill(std::size_t want) {
    if (cap_ < want || cap_ == 0)
      grow(std::min(max_, std::max(want, std::max<std::size_t>(cap_ * 2, 1u << 20))));
    if (cap_ - pos_ < want) {
      std::memmove(buf_.data(), buf_.data() + pos_, len_ - pos_);
      len_ -= pos_;
      pos_ = 0;
    }
    while (len_ - pos_ < want && !eof_) {
      CFS_ASSIGN(std::size_t n, in_.read(std::span(buf_.data() + len_, cap_ - len_)));
      if (n == 0) eof_ = true;
      len_ += n;
    }
    return {};
  }

  void consume(std::size_t n) {
    pos_ += n;
    offset_ += n;
    if (pos_ == len_) pos_ = len_ = 0;
  }

  /// Fills `dst` from the window, then straight from the source; returns the bytes placed.
  Result<std::size_t> take(std::span<std::byte> dst) {
    std::size_t n = std::min(dst.size(), available());
    std::memcpy(dst.data(), buf_.data() + pos_, n);
    consume(n);
    if (n < dst.size() && !eof_) {
      CFS_ASSIGN(std::size_t got, read_full(in_, dst.subspan(n)));
      if (n + got < dst.size()) eof_ = true;
      offset_ += got;
      n += got;
    }
    return n;
  }

  /// The most a fill() can ask for.
  std::size_t capacity() const { return max_; }

 private:
  void grow(std::size_t cap) {
    AlignedBuffer bigger(cap);
    if (cap_ > 0) std::memcpy(bigger.data(), buf_.data() + pos_, len_ - pos_);
    len_ -= pos_;
    pos_ = 0;
    buf_ = std::move(bigger);
    cap_ = cap;
  }

  ByteSource& in_;
  std::size_t max_;
  AlignedBuffer buf_;  // page-aligned: the kernel copies into it fastest
  std::size_t cap_ = 0;
  std::size_t pos_ = 0, len_ = 0;
  std::uint64_t offset_ = 0;
  bool eof_ = false;
};

Error truncated(const tar::Entry& e, std::uint64_t got, std::uint64_t want) {
  return Error(Errc::kInvalidInput,
               fmt::format("tar entry '{}' at byte {}: the archive ends inside its data ({} of {} "
                           "bytes)",
                           e.path, e.offset, got, want));
}

}  // namespace

Result<SplitStats> split_tar(ByteSource& in, splitstream::Writer& out, const std::string& what,
                             const tar::Limits& limits) {
  auto with_layer = [&](Error e) { return fail(in_layer(std::move(e), what)); };
  std::size_t cap =
      std::max<std::size_t>(4u << 20, static_cast<std::size_t>(limits.max_metadata) +
                                          (limits.max_extensions + 3) * tar::kBlockSize);
  TarInput t(in, cap);
  tar::Parser parser(limits);
  SplitStats st;
  std::size_t need = tar::kBlockSize;
  auto emit = [&](std::size_t n) -> Status {
    CFS_TRY(out.write_inline(t.window().subspan(0, n)));
    t.consume(n);
    return {};
  };
  for (;;) {
    if (auto s = t.fill(need); !s) return with_layer(std::move(s).error());
    Result<tar::Event> ev = t.available() < need && t.eof() ? parser.at_eof(t.window(), t.offset())
                                                            : parser.parse(t.window(), t.offset());
    if (!ev) return with_layer(std::move(ev).error());
    switch (ev->kind) {
      case tar::EventKind::kNeedData:
        need = ev->need;
        continue;
      case tar::EventKind::kGlobal:
        CFS_TRY(emit(ev->consumed));
        need = tar::kBlockSize;
        continue;
      case tar::EventKind::kEnd: {
        CFS_TRY(emit(ev->consumed));
        // Record padding and anything else after the end: inline, so the layer is rebuilt
        // byte for byte.
        for (;;) {
          std::uint64_t before = t.offset();
          if (auto s = t.fill(1u << 20); !s) return with_layer(std::move(s).error());
          if (t.available() == 0) break;
          CFS_TRY(emit(t.available()));
          st.trailing_bytes += t.offset() - before;
        }
        st.tar_bytes = t.offset();
        return st;
      }
      case tar::EventKind::kEntry:
        break;
    }
    const tar::Entry& e = ev->entry;
    CFS_TRY(emit(ev->consumed));
    ++st.entries;
    if (e.is_regular() && e.size > kInlineContentMax) {
      std::uint64_t got = 0;
      auto fill = [&](std::span<std::byte> dst) -> Status {
        CFS_ASSIGN(std::size_t n, t.take(dst));
        got += n;
        if (n < dst.size()) return fail(in_layer(truncated(e, got, e.size), what));
        return {};
      };
      CFS_TRY(out.write_external(e.size, fill));
    } else {
      for (std::uint64_t left = e.size; left > 0;) {  // inline data, in pieces
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, 1u << 20));
        if (auto s = t.fill(n); !s) return with_layer(std::move(s).error());
        if (t.available() < n)
          return with_layer(truncated(e, e.size - left + t.available(), e.size));
        CFS_TRY(emit(n));
        left -= n;
      }
    }
    // Padding. umoci 0.4.7 ends its layers right after the last entry's data, without the
    // padding: a short padding is accepted at the very end (the bytes are kept as they are).
    auto pad = static_cast<std::size_t>(tar::padded(e.size) - e.size);
    if (auto s = t.fill(pad); !s) return with_layer(std::move(s).error());
    if (t.available() < pad) {
      CFS_TRY(emit(t.available()));
      st.tar_bytes = t.offset();
      return st;
    }
    CFS_TRY(emit(pad));
    need = tar::kBlockSize;
  }
}

Status LayerReader::read_exact(std::size_t n, std::string* keep, const tar::Entry& e) {
  char buf[4096];
  while (n > 0) {
    std::size_t want = std::min(n, sizeof buf);
    auto got = stream_.read_inline(std::as_writable_bytes(std::span(buf, want)));
    if (!got) return fail(in_layer(std::move(got).error(), what_));
    if (*got != want)
      return fail(Errc::kCorruptImage,
                  fmt::format("{}: tar entry '{}' at byte {}: its data is not inline in the layer "
                              "stream",
                              what_, e.path, e.offset));
    if (keep) keep->append(buf, want);
    offset_ += want;
    n -= want;
  }
  return {};
}

Status LayerReader::read_padding(std::size_t n, const tar::Entry& e) {
  char buf[tar::kBlockSize];
  auto got = stream_.read_inline(std::as_writable_bytes(std::span(buf, n)));
  if (!got) return fail(in_layer(std::move(got).error(), what_));
  offset_ += *got;
  if (*got == n) return {};
  // A layer may end inside the last entry's padding (split_tar keeps such layers as they are).
  auto end = stream_.at_end();
  if (!end) return fail(in_layer(std::move(end).error(), what_));
  if (!*end)
    return fail(Errc::kCorruptImage,
                fmt::format("{}: tar entry '{}' at byte {}: its padding is not inline in the "
                            "layer stream",
                            what_, e.path, e.offset));
  done_ = true;
  return {};
}

Result<std::optional<LayerEntry>> LayerReader::next() {
  using R = std::optional<LayerEntry>;
  if (done_) return R{};
  for (;;) {
    auto ev = parser_.parse(std::as_bytes(std::span(buf_.data(), buf_.size())), offset_);
    if (!ev) return fail(in_layer(std::move(ev).error(), what_));
    if (ev->kind == tar::EventKind::kNeedData) {
      std::size_t old = buf_.size();
      buf_.resize(ev->need);
      auto span = std::as_writable_bytes(std::span(buf_.data() + old, ev->need - old));
      auto got = stream_.read_inline(span);
      if (!got) return fail(in_layer(std::move(got).error(), what_));
      buf_.resize(old + *got);
      if (*got == span.size()) continue;
      auto end = parser_.at_eof(std::as_bytes(std::span(buf_.data(), buf_.size())), offset_);
      if (!end) return fail(in_layer(std::move(end).error(), what_));
      done_ = true;
      return R{};
    }
    offset_ += ev->consumed;
    buf_.erase(0, ev->consumed);
    if (ev->kind == tar::EventKind::kGlobal) continue;
    if (ev->kind == tar::EventKind::kEnd) {
      done_ = true;
      return R{};
    }
    LayerEntry le;
    le.tar = std::move(ev->entry);
    le.data_offset = offset_;
    const tar::Entry& e = le.tar;
    std::uint64_t pad = tar::padded(e.size) - e.size;
    if (e.is_regular() && e.size > kInlineContentMax) {
      auto ext = stream_.next_external();
      if (!ext) return fail(in_layer(std::move(ext).error(), what_));
      if (!*ext)
        return fail(Errc::kCorruptImage,
                    fmt::format("{}: tar entry '{}' at byte {}: a file of {} bytes is not an "
                                "external object in the layer stream",
                                what_, e.path, e.offset, e.size));
      le.object = (*ext)->digest;
      offset_ += e.size;
    } else {
      std::string content;
      CFS_TRY(read_exact(static_cast<std::size_t>(e.size), e.is_regular() ? &content : nullptr, e));
      if (e.is_regular()) le.inline_content = std::move(content);
    }
    CFS_TRY(read_padding(static_cast<std::size_t>(pad), e));
    return R(std::move(le));
  }
}

}  // namespace cfs::oci
