// SPDX-License-Identifier: Apache-2.0
// Splitstream reader (format: splitstream/format.h) for untrusted files: both header layouts
// (the current one and bootc <= 1.15's), an info section larger than 80 bytes (its tail is
// ignored), every range checked against the file size, every chunk against the stream size
// and object_refs, and bounded memory (reference tables up to the limits below; the zstd
// sections are decompressed in pieces). Errors name the file (`what`) and the field.
//
// Reading the chunks: read_inline() returns inline bytes across consecutive inline chunks and
// stops before an external chunk; next_external() takes an external chunk when one is next.
// reassemble() writes the whole stream, opening external objects through an ObjectOpener.
//
// Thread-safety: one thread per Reader.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cfs/splitstream/objects.h"
#include "cfs/util/result.h"
#include "cfs/util/unique_fd.h"
#include "cfs/verity/digest.h"

namespace cfs::splitstream {

struct ReaderOptions {
  /// Refuse another algorithm (kInvalidInput); nullopt accepts SHA-256 and SHA-512.
  std::optional<verity::HashAlg> algorithm;
  /// Refuse another content type (kInvalidInput).
  std::optional<std::uint64_t> content_type;
  /// Largest stream_refs / object_refs section loaded (64 MiB: a million SHA-512 objects).
  std::uint64_t max_refs_bytes = 64u << 20;
  /// Largest decompressed named_refs section.
  std::uint64_t max_named_refs_bytes = 16u << 20;
};

struct ExternalChunk {
  std::uint64_t index = 0;  ///< into object_refs()
  verity::Digest digest;
};

class Reader {
 public:
  /// Reads and checks the header, info and reference sections of the splitstream in `fd`
  /// (read with pread; the Reader keeps the fd). `what` names it in errors.
  static Result<Reader> open(UniqueFd fd, std::string what, const ReaderOptions& options = {});

  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;
  ~Reader();

  verity::HashAlg algorithm() const noexcept;
  std::uint64_t content_type() const noexcept;
  std::uint64_t stream_size() const noexcept;
  /// True when the file has bootc <= 1.15's header layout.
  bool old_header() const noexcept;
  const std::vector<verity::Digest>& stream_refs() const noexcept;
  const std::vector<verity::Digest>& object_refs() const noexcept;
  /// Named references in file order (composefs-rs writes them sorted by name).
  const std::vector<std::pair<std::string, verity::Digest>>& named_refs() const noexcept;
  /// The target of a named reference (the last one when a name repeats).
  std::optional<verity::Digest> named_ref(std::string_view name) const;

  /// Reads up to buf.size() inline bytes, across consecutive inline chunks; returns fewer only
  /// when an external chunk or the end of the stream is next (0: nothing inline is next).
  Result<std::size_t> read_inline(std::span<std::byte> buf);
  /// Takes the next chunk if it is external; nullopt when inline data or the end is next.
  Result<std::optional<ExternalChunk>> next_external();
  /// True when no chunk is left.
  Result<bool> at_end();
  /// Inline bytes delivered so far.
  std::uint64_t inline_read() const noexcept;

  /// Writes the remaining stream to `out`: inline bytes as they are, each external chunk as
  /// the whole content of the object `open` returns. At the end the bytes written since the
  /// start of the stream must equal stream_size (kCorruptImage otherwise).
  Status reassemble(const ObjectOpener& open, const ByteOutput& out);

 private:
  struct Impl;
  explicit Reader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::splitstream
