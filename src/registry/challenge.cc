// SPDX-License-Identifier: Apache-2.0
#include "registry/challenge.h"

#include <cctype>

#include "registry/http.h"

namespace cfs::registry::detail {
namespace {

// RFC 7230 token characters.
bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

class Scanner {
 public:
  explicit Scanner(std::string_view s) : s_(s) {}
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool done() const { return i_ >= s_.size(); }
  char peek() const { return done() ? '\0' : s_[i_]; }
  void advance() { ++i_; }
  std::size_t pos() const { return i_; }
  void seek(std::size_t p) { i_ = p; }
  std::string_view token() {
    std::size_t start = i_;
    while (i_ < s_.size() && is_tchar(s_[i_])) ++i_;
    return s_.substr(start, i_ - start);
  }
  // A quoted-string with backslash escapes; assumes peek() == '"'.
  std::string quoted() {
    std::string out;
    ++i_;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
      out.push_back(s_[i_++]);
    }
    if (i_ < s_.size()) ++i_;
    return out;
  }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

}  // namespace

std::vector<Challenge> parse_challenges(std::string_view header) {
  std::vector<Challenge> out;
  Scanner sc(header);
  while (true) {
    sc.skip_ws();
    while (sc.peek() == ',') {
      sc.advance();
      sc.skip_ws();
    }
    if (sc.done()) break;
    std::string_view scheme = sc.token();
    if (scheme.empty()) {
      sc.advance();  // junk: skip a character and resynchronise
      continue;
    }
    Challenge ch{ascii_lower(scheme), {}};
    // auth-params: name=value pairs separated by commas; a token not followed by '=' starts
    // the next challenge.
    while (true) {
      sc.skip_ws();
      while (sc.peek() == ',') {
        sc.advance();
        sc.skip_ws();
      }
      std::size_t mark = sc.pos();
      std::string_view name = sc.token();
      sc.skip_ws();
      if (name.empty() || sc.peek() != '=') {
        sc.seek(mark);
        break;
      }
      sc.advance();
      sc.skip_ws();
      std::string value = sc.peek() == '"' ? sc.quoted() : std::string(sc.token());
      ch.params[ascii_lower(name)] = std::move(value);
    }
    out.push_back(std::move(ch));
  }
  return out;
}

}  // namespace cfs::registry::detail
