// SPDX-License-Identifier: Apache-2.0
// Fuzzes the layer decompressors with arbitrary bytes: every decoder must end in bytes or a
// clear error, never a crash, hang or unbounded memory. The first input byte shapes the run
// (how the compressed bytes arrive: all at once or in pieces of 1..64 bytes; how large the
// reads of the output are; which engine), the rest is the blob. Each decoder's output is
// drained up to 64 MiB, so a decompression bomb costs a bounded time. Differential checks:
//   gzip: ISA-L and zlib agree (the same bytes, or both fail);
//   zstd: decompressor() and ZstdPushDecoder agree, also when it decodes into a buffer
//         (decode_into) large enough for the first frame;
//   none: the bytes pass unchanged.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <span>
#include <string>

#include "cfs/oci/decompress.h"
#include "fuzz_target.h"
#include "testutil/piece_source.h"

namespace {

using namespace cfs;
using namespace cfs::oci;

constexpr std::size_t kCap = 64u << 20;

/// The output, or nullopt on an error; `capped` when it reached kCap first.
struct Outcome {
  std::optional<std::string> out;
  bool capped = false;
};

Outcome drain(ByteSource& d, std::size_t chunk) {
  Outcome o;
  std::string out, buf(chunk, '\0');
  for (;;) {
    auto n = d.read(std::as_writable_bytes(std::span(buf)));
    if (!n) {
      if (fuzz_verbose()) std::fprintf(stderr, "%s\n", n.error().message().c_str());
      FUZZ_CHECK(n.error().context().find("fuzz") != std::string::npos,
                 "an error that does not name the blob");
      return o;
    }
    if (*n == 0) break;
    FUZZ_CHECK(*n <= buf.size(), "a read returned more than asked for");
    out.append(buf.data(), *n);
    if (out.size() >= kCap) {
      o.capped = true;
      break;
    }
  }
  o.out = std::move(out);
  return o;
}

Outcome pull(Compression c, std::string_view in, std::size_t piece, std::size_t chunk,
             GzipEngine engine) {
  testutil::PieceSource src(std::string(in), piece);
  auto d = decompressor(c, src, "fuzz", engine);
  return drain(*d, chunk);
}

/// ZstdPushDecoder fed `piece` bytes per write (0: all at once), optionally into `dst`.
Outcome push(std::string_view in, std::size_t piece, std::size_t dst_size) {
  Outcome o;
  std::string out;
  ZstdPushDecoder d("fuzz", [&](std::span<const std::byte> b) -> Status {
    if (out.size() >= kCap) return fail(Errc::kInvalidInput, "cap");
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
    return {};
  });
  std::string dst(dst_size, '\0');
  if (dst_size != 0) (void)d.decode_into(std::as_writable_bytes(std::span(dst)));
  auto bytes = std::as_bytes(std::span(in.data(), in.size()));
  std::size_t step = piece == 0 ? std::max<std::size_t>(in.size(), 1) : piece;
  for (std::size_t pos = 0; pos < bytes.size(); pos += step) {
    if (auto st = d.write(bytes.subspan(pos, std::min(step, bytes.size() - pos))); !st) {
      if (fuzz_verbose()) std::fprintf(stderr, "push: %s\n", st.error().message().c_str());
      o.capped = out.size() >= kCap;
      return o;
    }
  }
  if (auto st = d.finish(); !st) {
    if (fuzz_verbose()) std::fprintf(stderr, "push: %s\n", st.error().message().c_str());
    return o;
  }
  o.out = std::move(out);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t shape = data[0];
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  // Bits 0-1: the pieces the input arrives in; bits 2-3: the output chunk; bits 4-5: the
  // push decoder's buffer for its first frame.
  static constexpr std::size_t kPieces[] = {0, 1, 7, 64};
  static constexpr std::size_t kChunks[] = {65536, 1, 333, 4096};
  static constexpr std::size_t kDst[] = {0, 1, 4096, 65536};
  const std::size_t piece = kPieces[shape & 3], chunk = kChunks[(shape >> 2) & 3],
                    dst = kDst[(shape >> 4) & 3];

  auto head = std::as_bytes(std::span(in.data(), std::min<std::size_t>(in.size(), 8)));
  Compression sniffed = sniff_compression(head);
  if (sniffed == Compression::kGzip)
    FUZZ_CHECK(in.size() >= 2 && in[0] == '\x1f' && in[1] == '\x8b', "gzip sniffed without magic");

  auto none = pull(Compression::kNone, in, piece, chunk, GzipEngine::kIsal);
  FUZZ_CHECK(none.out && (none.capped || *none.out == in), "kNone changed the bytes");

  auto isal = pull(Compression::kGzip, in, piece, chunk, GzipEngine::kIsal);
  auto zlib = pull(Compression::kGzip, in, piece, chunk, GzipEngine::kZlib);
  if (!isal.capped && !zlib.capped) {
    FUZZ_CHECK(isal.out.has_value() == zlib.out.has_value(), "ISA-L and zlib disagree on success");
    if (isal.out) FUZZ_CHECK(*isal.out == *zlib.out, "ISA-L and zlib decode different bytes");
  }
  if (sniffed != Compression::kGzip)
    FUZZ_CHECK(!isal.out && !zlib.out, "gzip decoded what does not start with its magic");

  auto zpull = pull(Compression::kZstd, in, piece, chunk, GzipEngine::kIsal);
  auto zpush = push(in, piece, 0);
  if (!zpull.capped && !zpush.capped) {
    FUZZ_CHECK(zpull.out.has_value() == zpush.out.has_value(),
               "zstd pull and push decoders disagree on success");
    if (zpull.out) FUZZ_CHECK(*zpull.out == *zpush.out, "zstd pull and push decode differently");
  }
  if (zpull.out && !zpull.capped && sniffed != Compression::kZstd)
    FUZZ_CHECK(zpull.out->empty(), "zstd decoded bytes from what does not start with its magic");
  if (dst != 0 && !zpull.capped) {
    auto into = push(in, piece, dst);
    // A first frame larger than the buffer is an error there; otherwise the same outcome.
    if (into.out)
      FUZZ_CHECK(zpull.out && *into.out == *zpull.out, "decode_into decodes differently");
    if (!into.out && zpull.out && zpull.out->size() <= dst)
      FUZZ_CHECK(false, "decode_into failed on what fits its buffer");
  }
  return 0;
}
