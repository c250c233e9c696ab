// SPDX-License-Identifier: Apache-2.0
// Tar layers as splitstreams, composefs-rs' split rule (docs/oci-layers.md):
//  * every header block is inline: extension headers and their data (pax 'x'/'g', GNU 'L'/'K'),
//  * the content of a regular file ('0', '\0', '7') larger than kInlineContentMax bytes is an
//    external object (exactly `size` bytes), its padding to 512 inline after the reference,
//  * all other data is inline with its padding: small files, data of other entry types,
//  * the end-of-archive blocks and every byte after them (record padding, junk) are inline,
//  * a tar that stops at a header boundary without end-of-archive blocks is accepted, and so
//    is one that stops inside the last entry's padding (umoci 0.4.7 writes those); a tar that
//    stops inside data is refused.
// Reassembling the stream (splitstream::Reader::reassemble) therefore gives the layer back
// byte for byte, and its sha256 is the layer's diff_id.
//
// LayerReader walks a layer splitstream entry by entry without opening any object: contents
// over the threshold are digests taken from the stream, small ones are inline.
// Thread-safety: one thread per call / reader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "cfs/oci/byte_source.h"
#include "cfs/oci/tar.h"
#include "cfs/overlay/limits.h"
#include "cfs/splitstream/reader.h"
#include "cfs/splitstream/writer.h"
#include "cfs/util/result.h"
#include "cfs/verity/digest.h"

namespace cfs::oci {

/// composefs-rs' INLINE_CONTENT_MAX_V0: regular files up to this size stay inline in layer
/// splitstreams (and in the merged image), larger ones are objects. The same threshold as a
/// directory scan's.
inline constexpr std::uint64_t kInlineContentMax = overlay::kInlineThreshold;

struct SplitStats {
  std::uint64_t entries = 0;
  std::uint64_t tar_bytes = 0;       ///< bytes read from the tar
  std::uint64_t trailing_bytes = 0;  ///< after the end-of-archive blocks (or a clean end)
  splitstream::WriterStats stream;   ///< filled by the caller's finish()
};

/// Splits the tar read from `in` into `out` (a Writer made with content type kOciLayer); the
/// caller calls out.finish*(). Errors name `what` (the layer), the entry and its offset. When
/// `in` is a ReadRing (LayerInput::tar()), headers and file contents are used where they lie
/// in it (contents as views, Writer::write_external_view); any other source is read through a
/// ring of its own on this thread. Returns once no worker of `out` reads the ring any more.
/// A ring's views must hold the largest header `limits` allow (kInvalidInput otherwise).
Result<SplitStats> split_tar(ByteSource& in, splitstream::Writer& out, const std::string& what,
                             const tar::Limits& limits = {});

/// One entry of a layer read back from its splitstream.
struct LayerEntry {
  tar::Entry tar;
  std::optional<std::string> inline_content;  ///< regular files up to kInlineContentMax
  std::optional<verity::Digest> object;       ///< regular files above it
  std::uint64_t data_offset = 0;              ///< archive offset of the entry's data
};

class LayerReader {
 public:
  /// `stream` is borrowed; `what` names the layer in errors.
  LayerReader(splitstream::Reader& stream, std::string what, const tar::Limits& limits = {})
      : stream_(stream), what_(std::move(what)), parser_(limits) {}

  /// The next entry, or nullopt after the last one. Global pax headers are skipped.
  Result<std::optional<LayerEntry>> next();

 private:
  Status read_exact(std::size_t n, std::string* keep, const tar::Entry& e);
  Status read_padding(std::size_t n, const tar::Entry& e);

  splitstream::Reader& stream_;
  std::string what_;
  tar::Parser parser_;
  std::string buf_;
  std::uint64_t offset_ = 0;
  bool done_ = false;
};

}  // namespace cfs::oci
