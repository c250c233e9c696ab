// SPDX-License-Identifier: Apache-2.0
#include "tools/transfer_progress.h"

#include <fmt/core.h>
#include <unistd.h>

#include <cstdio>

namespace cfs::tools {
namespace {

using Kind = registry::TransferEvent::Kind;

// TEMPORARY until util/json.h lands (arch-store): ASCII-only escaping.
namespace json {
std::string string(std::string_view s) {
  std::string o = "\"";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      o += '\\';
      o += ch;
    } else if (c < 0x20 || c >= 0x7f) {
      o += fmt::format("\\u{:04x}", c);
    } else {
      o += ch;
    }
  }
  return o + "\"";
}
}  // namespace json

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

std::string short_digest(const std::string& d) {
  auto colon = d.find(':');
  return colon == std::string::npos ? d : d.substr(colon + 1, 12);
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

TransferProgress::Mode TransferProgress::pick(bool json) {
  if (json) return Mode::kJson;
  return ::isatty(STDERR_FILENO) == 1 ? Mode::kTerminal : Mode::kNone;
}

registry::ProgressCallback TransferProgress::callback() {
  if (mode_ == Mode::kNone) return {};
  return [this](const registry::TransferEvent& ev) { on_event(ev); };
}

void TransferProgress::on_event(const registry::TransferEvent& ev) {
  if (mode_ == Mode::kJson) {
    std::string line = fmt::format(
        "{{\"event\":\"{}\",\"direction\":\"{}\",\"digest\":{},\"bytes\":{}", kind_name(ev.kind),
        ev.direction == registry::TransferEvent::Direction::kUpload ? "upload" : "download",
        json::string(ev.digest), ev.bytes);
    if (ev.size) line += fmt::format(",\"size\":{}", *ev.size);
    if (ev.resumed_from) line += fmt::format(",\"resumed_from\":{}", ev.resumed_from);
    line += fmt::format(",\"rate\":{:.0f}", ev.rate);
    if (ev.eta_s) line += fmt::format(",\"eta\":{:.1f}", *ev.eta_s);
    if (ev.kind == Kind::kRetry) line += fmt::format(",\"retry_delay\":{:.2f}", ev.retry_delay_s);
    if (!ev.message.empty()) line += ",\"message\":" + json::string(ev.message);
    line += fmt::format(",\"total_bytes\":{},\"total_size\":{},\"total_rate\":{:.0f}",
                        ev.total_bytes, ev.total_size, ev.total_rate);
    if (ev.total_eta_s) line += fmt::format(",\"total_eta\":{:.1f}", *ev.total_eta_s);
    fmt::print("{}}}\n", line);
    std::fflush(stdout);
    return;
  }
  // Terminal: finished blobs get a line of their own; one status line shows the totals.
  std::string clear = line_open_ ? "\r\033[K" : "";
  switch (ev.kind) {
    case Kind::kDone:
    case Kind::kSkipped:
      ++blobs_done_;
      fmt::print(stderr, "{}{} {} {}\n", clear, short_digest(ev.digest),
                 ev.kind == Kind::kDone ? "done" : "skipped:",
                 ev.kind == Kind::kDone ? human_bytes(static_cast<double>(ev.bytes)) : ev.message);
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
  if (ev.kind == Kind::kFailed) return;
  std::string total = ev.total_size
                          ? fmt::format("{} / {}", human_bytes(static_cast<double>(ev.total_bytes)),
                                        human_bytes(static_cast<double>(ev.total_size)))
                          : human_bytes(static_cast<double>(ev.total_bytes));
  fmt::print(stderr, "\r\033[K{} blobs done, {} at {}/s{}", blobs_done_, total,
             human_bytes(ev.total_rate), eta_text(ev.total_eta_s));
  std::fflush(stderr);
  line_open_ = true;
}

void TransferProgress::finish() {
  if (mode_ == Mode::kTerminal && line_open_) fmt::print(stderr, "\n");
  line_open_ = false;
}

}  // namespace cfs::tools
