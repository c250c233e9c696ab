// SPDX-License-Identifier: Apache-2.0
// The tools' one progress renderer, for every command that moves or imports blobs (`cfs oci
// pull` of any transport, `cfs oci push`, `cfs registry ...`): on a terminal a status line on
// stderr with the total (blobs done, bytes of total, rate, ETA) and the blobs in flight (short
// digest, %, rate); or one JSON object per event and line on stdout (docs/registry.md
// "Progress"):
//
//   {"event":"start|progress|retry|done|skipped|failed","direction":"download|upload|import",
//    "digest":"sha256:…","bytes":N,"size":N,"resumed_from":N,"rate":B/s,"eta":s,
//    "retry_delay":s,"message":"…","total_bytes":N,"total_size":N,"total_rate":B/s,
//    "total_eta":s}
//   {"event":"merging","layers":N}                       (cfs oci pull, after the layers)
//   {"event":"fill","objects":N,"objects_total":N,"bytes":N,"total_bytes":N,"failed":N,
//    "rate":B/s,"eta":s}             (a lazy mount's fill; cfs oci pull finishing one)
//
// `bytes` counts the blob's bytes so far (a resumed download includes its earlier part);
// "size", "eta", "total_eta", "resumed_from", "retry_delay" and "message" appear when known.
// Rates are measured here over the last three seconds, for every source alike.
// Thread-safety: on() may be called from several threads (serialised inside).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "cfs/ocirepo/pull.h"

namespace cfs::tools {

struct BlobEvent {
  enum class Kind { kStart, kProgress, kRetry, kDone, kSkipped, kFailed };
  enum class Direction { kDownload, kUpload, kImport };
  Kind kind = Kind::kProgress;
  Direction direction = Direction::kDownload;
  std::string digest;
  std::uint64_t bytes = 0;
  std::optional<std::uint64_t> size;
  std::uint64_t resumed_from = 0;
  double retry_delay_s = 0;
  std::string message;
};

/// The environment variable `var` (CFS_LAZY_TRACE, CFS_PULL_TRACE) names a FILE: the callback
/// appends one "<unix seconds> <event>" line to it per event, so a benchmark can show where a
/// command's time goes (docs/lazy.md, docs/oci.md). Empty when unset (or FILE cannot be
/// opened: timing is optional). Thread-safe (one O_APPEND write per line).
std::function<void(std::string_view)> trace_from_env(const char* var);

class Progress {
 public:
  enum class Mode { kNone, kTerminal, kJson };
  /// kJson with json; else kTerminal when stderr is a terminal; else kNone.
  static Mode pick(bool json);

  explicit Progress(Mode mode) : mode_(mode) {}
  Mode mode() const noexcept { return mode_; }

  void on(const BlobEvent& ev);
  /// The callback for ocirepo::PullOptions::progress (empty in kNone); this object must
  /// outlive the pull.
  std::function<void(const ocirepo::PullEvent&)> pull_callback();
  /// A fill's counts (registry::FillProgress): the first, the last (objects == objects_total)
  /// and at most ten a second in between are shown.
  void fill(std::uint64_t objects, std::uint64_t objects_total, std::uint64_t bytes,
            std::uint64_t bytes_total, std::uint64_t failed);
  /// Ends the terminal status line.
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  struct Rate {
    std::deque<std::pair<Clock::time_point, std::uint64_t>> samples;
    double add(Clock::time_point t, std::uint64_t bytes);
  };
  struct Blob {
    std::uint64_t bytes = 0;
    std::optional<std::uint64_t> size;
    Rate rate;
    double last_rate = 0;
    bool active = false;
  };
  void on_pull(const ocirepo::PullEvent& e);
  void json_line(const BlobEvent& ev, const Blob& b, double total_rate);
  void status_line(double total_rate, bool force);

  Mode mode_;
  std::mutex mu_;
  std::map<std::string, Blob> blobs_;
  std::uint64_t total_bytes_ = 0, total_size_ = 0, done_ = 0;
  bool pull_total_ = false;   // total_size_ came from a pull's kResolved
  std::size_t expected_ = 0;  // blobs announced by a pull's kResolved
  Rate total_rate_;
  Rate fill_rate_;
  bool fill_shown_ = false;
  Clock::time_point drawn_{};
  bool line_open_ = false;
};

/// "12.3 MiB" style sizes.
std::string human_bytes(double bytes);

}  // namespace cfs::tools
