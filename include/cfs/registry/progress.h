// SPDX-License-Identifier: Apache-2.0
// Transfer progress of a registry client: one event stream for every blob and manifest moved,
// with the totals of the whole operation. Tools render it (a progress bar on a terminal, JSON
// lines with --json); the library never prints.
//
// Events of one Client are delivered one at a time (the callback is never entered twice at
// once) from whichever thread moves the data, so the callback must be quick and must not call
// back into the Client. kProgress events are rate-limited (about 10 per second per blob);
// every other kind is always delivered.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace cfs::registry {

struct TransferEvent {
  enum class Kind {
    kStart,     ///< a transfer begins (resumed_from > 0 when it continues a partial download)
    kProgress,  ///< more bytes moved
    kRetry,     ///< an attempt failed and will be retried after `retry_delay_s`: see `message`
    kDone,      ///< complete and verified
    kSkipped,   ///< not transferred: the registry already had the blob, or it was local
    kFailed,    ///< given up: see `message`
  };
  enum class Direction { kDownload, kUpload };

  Kind kind = Kind::kProgress;
  Direction direction = Direction::kDownload;
  std::string digest;                 ///< "sha256:<hex>", or the manifest reference
  std::uint64_t bytes = 0;            ///< bytes of this blob done (including resumed_from)
  std::optional<std::uint64_t> size;  ///< expected size, when known
  std::uint64_t resumed_from = 0;     ///< bytes taken from an earlier partial download
  double rate = 0;                    ///< bytes per second, over the last few seconds
  std::optional<double> eta_s;        ///< seconds left for this blob, when size and rate allow
  double retry_delay_s = 0;           ///< kRetry: the wait before the next attempt
  std::string message;                ///< kRetry / kFailed / kSkipped: why
  // Totals over every blob of the operation that announced its size.
  std::uint64_t total_bytes = 0;      ///< bytes done, all blobs
  std::uint64_t total_size = 0;       ///< bytes expected, all blobs with a known size
  double total_rate = 0;              ///< bytes per second, all blobs
  std::optional<double> total_eta_s;  ///< seconds left for everything
};

using ProgressCallback = std::function<void(const TransferEvent&)>;

}  // namespace cfs::registry
