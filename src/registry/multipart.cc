// SPDX-License-Identifier: Apache-2.0
#include "registry/multipart.h"

#include <algorithm>
#include <cerrno>

#include "cfs/util/decimal.h"
#include "registry/http.h"

namespace cfs::registry::detail {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::optional<std::string> byteranges_boundary(std::string_view content_type) {
  auto semi = content_type.find(';');
  if (ascii_lower(trim(content_type.substr(0, semi))) != "multipart/byteranges" ||
      semi == std::string_view::npos)
    return std::nullopt;
  std::string_view rest = content_type.substr(semi + 1);
  while (!rest.empty()) {
    auto next = rest.find(';');
    std::string_view param = trim(rest.substr(0, next));
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
    auto eq = param.find('=');
    if (eq == std::string_view::npos || ascii_lower(trim(param.substr(0, eq))) != "boundary")
      continue;
    std::string_view b = trim(param.substr(eq + 1));
    if (b.size() >= 2 && b.front() == '"' && b.back() == '"') b = b.substr(1, b.size() - 2);
    if (b.empty() || b.size() > 70) return std::nullopt;
    // RFC 2046's bchars: no line breaks or other controls, no quote.
    for (char c : b)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '"') return std::nullopt;
    return std::string(b);
  }
  return std::nullopt;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_content_range(std::string_view v) {
  v = trim(v);
  if (v.size() < 6 || ascii_lower(v.substr(0, 6)) != "bytes ") return std::nullopt;
  v.remove_prefix(6);
  auto dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash)
    return std::nullopt;
  auto first = parse_decimal_u64(v.substr(0, dash)),
       last = parse_decimal_u64(v.substr(dash + 1, slash - dash - 1));
  std::string_view total = v.substr(slash + 1);
  if (!first || !last || *last < *first || (total != "*" && !parse_decimal_u64(total)))
    return std::nullopt;
  if (total != "*" && *parse_decimal_u64(total) <= *last) return std::nullopt;
  return std::make_pair(*first, *last);
}

ByterangesReader::ByterangesReader(std::string what, std::string boundary,
                                   std::vector<Range> ranges, Deliver deliver)
    : what_(std::move(what)),
      boundary_(std::move(boundary)),
      ranges_(std::move(ranges)),
      deliver_(std::move(deliver)),
      got_(ranges_.size()),
      seen_(ranges_.size()) {}

Status ByterangesReader::bad(const std::string& why) const {
  return fail_errno(
      what_ + ": multipart/byteranges response, byte " + std::to_string(offset_) + ": " + why,
      EPROTO);
}

Status ByterangesReader::feed(std::span<const std::byte> data) {
  while (!data.empty()) {
    if (state_ == State::kBody) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size()));
      CFS_TRY(deliver_(*part_, data.first(n)));
      got_[*part_] += n;
      left_ -= n;
      offset_ += n;
      data = data.subspan(n);
      if (left_ == 0) state_ = State::kAfterBody;
      continue;
    }
    const char c = static_cast<char>(data[0]);
    data = data.subspan(1);
    ++offset_;
    if (c != '\n') {
      if (line_.size() >= kMaxLine)
        return bad("a line longer than " + std::to_string(kMaxLine) + " bytes");
      line_.push_back(c);
      continue;
    }
    // Lines end in CRLF (RFC 9110/2046).
    if (line_.empty() || line_.back() != '\r') return bad("a line that does not end in CRLF");
    line_.pop_back();
    std::string l = std::move(line_);
    line_.clear();
    CFS_TRY(line(l));
  }
  return {};
}

Status ByterangesReader::line(std::string_view l) {
  const std::string delim = "--" + boundary_;
  switch (state_) {
    case State::kPreamble:
      // A preamble would be bytes outside the parts: only empty lines are let through.
      if (l.empty()) return {};
      if (l != delim)
        return bad("expected the boundary, got '" + std::string(l.substr(0, 64)) + "'");
      state_ = State::kHeaders;
      return {};
    case State::kHeaders: {
      if (!l.empty()) {
        if (++headers_ > kMaxHeaders)
          return bad("more than " + std::to_string(kMaxHeaders) + " header lines in a part");
        auto colon = l.find(':');
        if (colon == std::string_view::npos || colon == 0)
          return bad("a part's header line without a name: '" + std::string(l.substr(0, 64)) + "'");
        if (ascii_lower(l.substr(0, colon)) != "content-range") return {};
        if (part_) return bad("a part with two Content-Range fields");
        const std::string_view v = l.substr(colon + 1);
        auto r = parse_content_range(v);
        if (!r) return bad("a part's Content-Range is malformed: '" + std::string(trim(v)) + "'");
        for (std::size_t i = 0; i < ranges_.size(); ++i)
          if (ranges_[i].offset == r->first &&
              ranges_[i].offset + ranges_[i].length - 1 == r->second) {
            if (seen_[i]) return bad("Content-Range '" + std::string(trim(v)) + "' came twice");
            part_ = i;
          }
        if (!part_)
          return bad("Content-Range '" + std::string(trim(v)) +
                     "' is not one of the ranges asked for");
        return {};
      }
      if (!part_) return bad("a part without a Content-Range field");
      seen_[*part_] = true;
      ++parts_;
      left_ = ranges_[*part_].length;
      state_ = State::kBody;
      return {};
    }
    case State::kAfterBody:
      // The CRLF that ends a part's body belongs to the delimiter that follows.
      if (!l.empty()) return bad("bytes after a part's Content-Range end");
      state_ = State::kDelimiter;
      return {};
    case State::kDelimiter:
      if (l == delim) {
        if (parts_ >= ranges_.size()) return bad("more parts than ranges asked for");
        state_ = State::kHeaders;
        headers_ = 0;
        part_.reset();
        return {};
      }
      if (l == delim + "--") {
        state_ = State::kEnd;
        return {};
      }
      return bad("expected the boundary after a part, got '" + std::string(l.substr(0, 64)) + "'");
    case State::kEnd:
      if (!l.empty()) return bad("bytes after the closing boundary");
      return {};
    case State::kBody:
      break;
  }
  return bad("internal state");
}

Status ByterangesReader::finish() const {
  if (state_ != State::kEnd || !line_.empty())
    return bad("the response ended before its closing boundary");
  return {};
}

}  // namespace cfs::registry::detail
