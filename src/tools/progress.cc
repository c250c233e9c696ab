// SPDX-License-Identifier: Apache-2.0
#include "tools/progress.h"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <span>
#include <vector>

#include "cfs/util/json.h"
#include "cfs/util/sys.h"

namespace cfs::tools {

std::function<void(std::string_view)> trace_from_env(const char* var) {
  const char* path = std::getenv(var);
  if (!path || !*path) return {};
  auto fd = sys::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (!fd) return {};
  auto shared = std::make_shared<UniqueFd>(std::move(*fd));
  return [shared](std::string_view event) {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    const std::string line = fmt::format("{}.{:06} {}\n", ts.tv_sec, ts.tv_nsec / 1000, event);
    (void)sys::write_all(shared->get(), std::as_bytes(std::span(line)));
  };
}

namespace {

using Kind = BlobEvent::Kind;

// Rates over this window: long enough to smooth bursts, short enough to follow a throttled or
// stalled connection.
constexpr auto kRateWindow = std::chrono::seconds(3);
// Progress lines at most this often per blob (JSON) or at all (terminal).
constexpr auto kDrawInterval = std::chrono::milliseconds(100);

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kStart:
      return "start";
    case Kind::kProgress:
      return "progress";
    case Kind::kRetry:
      return "retry";
    case Kind::kDone:
      return "done";
    case Kind::kSkipped:
      return "skipped";
    case Kind::kFailed:
      return "failed";
  }
  return "?";
}

const char* direction_name(BlobEvent::Direction d) {
  switch (d) {
    case BlobEvent::Direction::kDownload:
      return "download";
    case BlobEvent::Direction::kUpload:
      return "upload";
    case BlobEvent::Direction::kImport:
      return "import";
  }
  return "?";
}

std::string short_digest(const std::string& d) {
  auto colon = d.find(':');
  return colon == std::string::npos ? d : d.substr(colon + 1, 12);
}

std::optional<double> eta(std::optional<std::uint64_t> size, std::uint64_t bytes, double rate) {
  if (!size || rate <= 0 || *size < bytes) return std::nullopt;
  return static_cast<double>(*size - bytes) / rate;
}

std::string eta_text(const std::optional<double>& eta) {
  if (!eta) return "";
  auto s = static_cast<long>(*eta + 0.5);
  if (s >= 3600) return fmt::format(" ETA {}h{:02}m", s / 3600, s / 60 % 60);
  if (s >= 60) return fmt::format(" ETA {}m{:02}s", s / 60, s % 60);
  return fmt::format(" ETA {}s", s);
}

}  // namespace

std::string human_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, kUnits[u]);
}

double Progress::Rate::add(Clock::time_point t, std::uint64_t bytes) {
  if (!samples.empty() && bytes < samples.back().second) samples.clear();  // restarted
  samples.emplace_back(t, bytes);
  while (samples.size() > 2 && t - samples[1].first >= kRateWindow) samples.pop_front();
  auto [t0, b0] = samples.front();
  double secs = std::chrono::duration<double>(t - t0).count();
  // A rate as soon as anything moved: a small transfer may end within the first 50 ms.
  return secs > 0 ? static_cast<double>(bytes - b0) / secs : 0.0;
}

Progress::Mode Progress::pick(bool json) {
  if (json) return Mode::kJson;
  return ::isatty(STDERR_FILENO) == 1 ? Mode::kTerminal : Mode::kNone;
}

void Progress::on(const BlobEvent& ev) {
  if (mode_ == Mode::kNone) return;
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  auto [it, inserted] = blobs_.try_emplace(ev.digest);
  Blob& b = it->second;
  if (!b.size && ev.size) {
    b.size = ev.size;
    if (!pull_total_) total_size_ += *ev.size;
  }
  switch (ev.kind) {
    case Kind::kStart:
    case Kind::kProgress:
    case Kind::kDone:
      b.active = ev.kind != Kind::kDone;
      total_bytes_ = total_bytes_ - std::min(total_bytes_, b.bytes) + ev.bytes;
      b.bytes = ev.bytes;
      if (ev.kind == Kind::kStart && ev.resumed_from == 0) b.rate.samples.clear();
      b.last_rate = b.rate.add(now, ev.bytes);
      if (ev.kind == Kind::kDone) ++done_;
      break;
    case Kind::kSkipped:
      // Nothing to move: it leaves the total rather than counting as moved bytes (which
      // would make the rate and the ETA lie).
      b.active = false;
      ++done_;
      if (b.size) total_size_ -= std::min(total_size_, *b.size);
      break;
    case Kind::kFailed:
      b.active = false;
      break;
    case Kind::kRetry:
      break;
  }
  const double total_rate = total_rate_.add(now, total_bytes_);
  if (mode_ == Mode::kJson) {
    // Progress lines at most ten a second per blob; every other event always.
    if (ev.kind == Kind::kProgress && !inserted && now - drawn_ < kDrawInterval) return;
    if (ev.kind == Kind::kProgress) drawn_ = now;
    json_line(ev, b, total_rate);
    return;
  }
  const std::string clear = line_open_ ? "\r\033[K" : "";
  switch (ev.kind) {
    case Kind::kDone:
      fmt::print(stderr, "{}{} done {}\n", clear, short_digest(ev.digest),
                 human_bytes(static_cast<double>(ev.bytes)));
      line_open_ = false;
      break;
    case Kind::kSkipped:
      fmt::print(stderr, "{}{} skipped: {}\n", clear, short_digest(ev.digest), ev.message);
      line_open_ = false;
      break;
    case Kind::kRetry:
    case Kind::kFailed:
      fmt::print(stderr, "{}{} {}: {}\n", clear, short_digest(ev.digest),
                 ev.kind == Kind::kRetry ? "retrying" : "failed", ev.message);
      line_open_ = false;
      break;
    default:
      break;
  }
  status_line(total_rate, ev.kind != Kind::kProgress);
}

void Progress::json_line(const BlobEvent& ev, const Blob& b, double total_rate) {
  std::string line =
      fmt::format("{{\"event\":\"{}\",\"direction\":\"{}\",\"digest\":{},\"bytes\":{}",
                  kind_name(ev.kind), direction_name(ev.direction), json::string(ev.digest),
                  ev.kind == Kind::kSkipped || ev.kind == Kind::kRetry ? b.bytes : ev.bytes);
  if (b.size) line += fmt::format(",\"size\":{}", *b.size);
  if (ev.resumed_from) line += fmt::format(",\"resumed_from\":{}", ev.resumed_from);
  line += fmt::format(",\"rate\":{:.0f}", b.last_rate);
  if (auto e = eta(b.size, b.bytes, b.last_rate)) line += fmt::format(",\"eta\":{:.1f}", *e);
  if (ev.kind == Kind::kRetry) line += fmt::format(",\"retry_delay\":{:.2f}", ev.retry_delay_s);
  if (!ev.message.empty()) line += ",\"message\":" + json::string(ev.message);
  line += fmt::format(",\"total_bytes\":{},\"total_size\":{},\"total_rate\":{:.0f}", total_bytes_,
                      total_size_, total_rate);
  if (auto e = eta(total_size_, total_bytes_, total_rate))
    line += fmt::format(",\"total_eta\":{:.1f}", *e);
  fmt::print("{}}}\n", line);
  std::fflush(stdout);
}

void Progress::status_line(double total_rate, bool force) {
  const auto now = Clock::now();
  if (!force && now - drawn_ < kDrawInterval) return;
  drawn_ = now;
  std::string total = total_size_
                          ? fmt::format("{} / {}", human_bytes(static_cast<double>(total_bytes_)),
                                        human_bytes(static_cast<double>(total_size_)))
                          : human_bytes(static_cast<double>(total_bytes_));
  std::string line =
      fmt::format("{}/{} blobs, {} at {}/s{}", done_, blobs_.size(), total, human_bytes(total_rate),
                  eta_text(eta(total_size_, total_bytes_, total_rate)));
  // The blobs in flight, largest first, as many as fit a narrow terminal.
  std::vector<std::pair<std::string, const Blob*>> active;
  for (const auto& [d, b] : blobs_)
    if (b.active) active.emplace_back(d, &b);
  std::sort(active.begin(), active.end(), [](const auto& x, const auto& y) {
    return x.second->size.value_or(0) > y.second->size.value_or(0);
  });
  for (std::size_t i = 0; i < std::min<std::size_t>(active.size(), 2); ++i) {
    const Blob& b = *active[i].second;
    line += fmt::format(" | {} {}{}/s", short_digest(active[i].first),
                        b.size && *b.size ? fmt::format("{}% ", b.bytes * 100 / *b.size) : "",
                        human_bytes(b.last_rate));
  }
  fmt::print(stderr, "\r\033[K{}", line);
  std::fflush(stderr);
  line_open_ = true;
}

std::function<void(const ocirepo::PullEvent&)> Progress::pull_callback() {
  if (mode_ == Mode::kNone) return {};
  return [this](const ocirepo::PullEvent& e) { on_pull(e); };
}

void Progress::on_pull(const ocirepo::PullEvent& e) {
  using K = ocirepo::PullEvent::Kind;
  BlobEvent ev;
  ev.direction = BlobEvent::Direction::kImport;
  ev.digest = e.blob;
  ev.size = e.total;
  ev.bytes = e.bytes;
  switch (e.kind) {
    case K::kResolved: {
      std::lock_guard lock(mu_);
      pull_total_ = true;  // the distinct layers' blobs, announced once
      total_size_ = e.total;
      expected_ = e.layers;
      return;
    }
    case K::kLayerStart:
      ev.kind = Kind::kStart;
      break;
    case K::kLayerBytes:
      ev.kind = Kind::kProgress;
      break;
    case K::kLayerDone:
      ev.kind = Kind::kDone;
      break;
    case K::kLayerSkipped:
      ev.kind = Kind::kSkipped;
      ev.message = "layer already in the repository";
      break;
    case K::kMerging: {
      std::lock_guard lock(mu_);
      if (mode_ == Mode::kJson) {
        fmt::print("{{\"event\":\"merging\",\"layers\":{}}}\n", e.layers);
        std::fflush(stdout);
      } else {
        fmt::print(stderr, "{}merging {} layers", line_open_ ? "\r\033[K" : "", e.layers);
        line_open_ = true;
      }
      return;
    }
  }
  on(ev);
}

void Progress::fill(std::uint64_t objects, std::uint64_t objects_total, std::uint64_t bytes,
                    std::uint64_t bytes_total, std::uint64_t failed) {
  if (mode_ == Mode::kNone) return;
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  const double rate = fill_rate_.add(now, bytes);
  const bool last = objects >= objects_total;
  if (fill_shown_ && !last && now - drawn_ < kDrawInterval) return;
  fill_shown_ = true;
  drawn_ = now;
  const auto e = eta(bytes_total, bytes, rate);
  if (mode_ == Mode::kJson) {
    std::string line = fmt::format(
        "{{\"event\":\"fill\",\"objects\":{},\"objects_total\":{},\"bytes\":{},\"total_bytes\":{},"
        "\"failed\":{},\"rate\":{:.0f}",
        objects, objects_total, bytes, bytes_total, failed, rate);
    if (e) line += fmt::format(",\"eta\":{:.1f}", *e);
    fmt::print("{}}}\n", line);
    std::fflush(stdout);
    return;
  }
  fmt::print(stderr, "\r\033[Kfill: {}/{} objects, {} / {} at {}/s{}{}{}", objects, objects_total,
             human_bytes(static_cast<double>(bytes)), human_bytes(static_cast<double>(bytes_total)),
             human_bytes(rate), last ? "" : eta_text(e),
             failed ? fmt::format(", {} failed", failed) : "", last ? "\n" : "");
  std::fflush(stderr);
  line_open_ = !last;
}

void Progress::finish() {
  std::lock_guard lock(mu_);
  if (mode_ == Mode::kTerminal && line_open_) fmt::print(stderr, "\n");
  line_open_ = false;
}

}  // namespace cfs::tools
