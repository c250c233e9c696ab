// SPDX-License-Identifier: Apache-2.0
#include "cfs/oci/layer_stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <vector>

#include "cfs/oci/read_ring.h"
#include "cfs/util/aligned_buffer.h"

namespace cfs::oci {

namespace {

/// `e` in the layer `what`, unless it already names it (the decompressor below the tar was
/// given `what` too).
Error in_layer(Error e, const std::string& what) {
  if (e.context().starts_with(what)) return e;
  return std::move(e).with_context(what);
}

Error truncated(const tar::Entry& e, std::uint64_t got, std::uint64_t want) {
  return Error(Errc::kInvalidInput,
               fmt::format("tar entry '{}' at byte {}: the archive ends inside its data ({} of {} "
                           "bytes)",
                           e.path, e.offset, got, want));
}

/// The split itself, over a ring the bytes are read into: headers are parsed where they lie,
/// file contents go to the writer as views of the ring (no copy), and the ring's bytes are
/// released once the writer has retired every view over them. Views may still be in use when
/// it returns (split_tar waits for them).
Result<SplitStats> split_ring(ReadRing& t, splitstream::Writer& out, const std::string& what,
                              const tar::Limits& limits) {
  auto with_layer = [&](Error e) { return fail(in_layer(std::move(e), what)); };
  const std::uint64_t header_max =
      limits.max_metadata + (limits.max_extensions + 3) * std::uint64_t{tar::kBlockSize};
  if (header_max > t.max_view())
    return with_layer(Error(Errc::kInvalidInput,
                            fmt::format("tar limits need {} bytes of headers at once, the read "
                                        "ring views at most {}",
                                        header_max, t.max_view())));
  // Stream offsets where the views still in the writer start (oldest first).
  std::deque<std::uint64_t> views;
  std::uint64_t retired = 0;
  auto release = [&] {
    for (std::uint64_t n = out.views_retired(); retired < n; ++retired) views.pop_front();
    t.release(views.empty() ? t.position() : views.front());
  };
  // At least `want` bytes from the position (fewer only at the end of the tar).
  auto view = [&](std::size_t want) -> Result<std::span<const std::byte>> {
    for (;;) {
      release();
      auto v = t.view(want);
      if (!v) return with_layer(std::move(v).error());
      if (*v) return **v;
      // Full of the bytes of objects not yet stored: wait for the oldest.
      if (views.empty())
        return fail(Errc::kInvalidInput, what + ": the read ring is full with nothing to retire");
      CFS_TRY(out.retire_view());
    }
  };
  auto emit = [&](std::span<const std::byte> v, std::size_t n) -> Status {
    CFS_TRY(out.write_inline(v.first(n)));
    t.advance(n);
    return {};
  };
  tar::Parser parser(limits);
  SplitStats st;
  std::size_t need = tar::kBlockSize;
  for (;;) {
    CFS_ASSIGN(auto w, view(need));
    Result<tar::Event> ev =
        w.size() < need ? parser.at_eof(w, t.position()) : parser.parse(w, t.position());
    if (!ev) return with_layer(std::move(ev).error());
    switch (ev->kind) {
      case tar::EventKind::kNeedData:
        need = ev->need;
        continue;
      case tar::EventKind::kGlobal:
        CFS_TRY(emit(w, ev->consumed));
        need = tar::kBlockSize;
        continue;
      case tar::EventKind::kEnd: {
        CFS_TRY(emit(w, ev->consumed));
        // Record padding and anything else after the end: inline, so the layer is rebuilt
        // byte for byte.
        for (;;) {
          CFS_ASSIGN(auto rest, view(1u << 20));
          if (rest.empty()) break;
          const std::size_t n = std::min<std::size_t>(rest.size(), 1u << 20);
          CFS_TRY(emit(rest, n));
          st.trailing_bytes += n;
        }
        st.tar_bytes = t.position();
        return st;
      }
      case tar::EventKind::kEntry:
        break;
    }
    const tar::Entry& e = ev->entry;
    CFS_TRY(emit(w, ev->consumed));
    ++st.entries;
    if (e.is_regular() && e.size > kInlineContentMax && e.size <= t.max_view()) {
      const auto size = static_cast<std::size_t>(e.size);
      CFS_ASSIGN(auto data, view(size));
      if (data.size() < size) return with_layer(truncated(e, data.size(), e.size));
      views.push_back(t.position());
      CFS_TRY(out.write_external_view(data.first(size)));
      t.advance(size);
    } else if (e.is_regular() && e.size > kInlineContentMax) {
      // Larger than a view: streamed to its file in pieces, each a view of the ring that the
      // workers write and hash while the split goes on.
      std::uint64_t got = 0;
      auto next = [&](std::size_t max) -> Result<std::span<const std::byte>> {
        CFS_ASSIGN(auto piece, view(max));
        if (piece.empty()) return fail(in_layer(truncated(e, got, e.size), what));
        const std::size_t n = std::min(piece.size(), max);
        views.push_back(t.position());
        t.advance(n);
        got += n;
        return piece.first(n);
      };
      CFS_TRY(out.write_external_stream(e.size, next));
    } else {
      for (std::uint64_t left = e.size; left > 0;) {  // inline data, in pieces
        auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, 1u << 20));
        CFS_ASSIGN(auto data, view(n));
        if (data.size() < n) return with_layer(truncated(e, e.size - left + data.size(), e.size));
        CFS_TRY(emit(data, n));
        left -= n;
      }
    }
    // Padding. umoci 0.4.7 ends its layers right after the last entry's data, without the
    // padding: a short padding is accepted at the very end (the bytes are kept as they are).
    auto pad = static_cast<std::size_t>(tar::padded(e.size) - e.size);
    if (pad > 0) {
      CFS_ASSIGN(auto p, view(pad));
      if (p.size() < pad) {
        CFS_TRY(emit(p, p.size()));
        st.tar_bytes = t.position();
        return st;
      }
      CFS_TRY(emit(p, pad));
    }
    need = tar::kBlockSize;
  }
}

}  // namespace

Result<SplitStats> split_tar(ByteSource& in, splitstream::Writer& out, const std::string& what,
                             const tar::Limits& limits) {
  std::unique_ptr<ReadRing> own;
  ReadRing* ring = in.read_ring();
  if (!ring) {
    const std::size_t header_max = static_cast<std::size_t>(
        limits.max_metadata + (limits.max_extensions + 3) * std::uint64_t{tar::kBlockSize});
    const std::size_t max_view =
        std::max<std::size_t>(kLayerViewMax, (header_max + AlignedBuffer::kAlign - 1) /
                                                 AlignedBuffer::kAlign * AlignedBuffer::kAlign);
    own = ReadRing::inline_reader(in, std::max(kLayerRingBytes, 2 * max_view), max_view);
    ring = own.get();
  }
  auto r = split_ring(*ring, out, what, limits);
  // Whatever happened, no worker may read the ring's bytes once this returns: the caller
  // reads on (LayerInput::finish()) or frees it.
  out.wait_views();
  if (r) ring->release(ring->position());
  return r;
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
