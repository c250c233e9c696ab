// SPDX-License-Identifier: Apache-2.0
#include "registry/referrers_memo.h"

#include <fcntl.h>
#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "cfs/util/atomic_file.h"
#include "cfs/util/decimal.h"
#include "cfs/util/sys.h"

namespace cfs::registry::detail {
namespace {

constexpr std::string_view kNoApi = "no-referrers-api ";
constexpr std::size_t kMaxMemo = 64;

/// The memo's path under REPO, or empty when `registry` cannot name a file (only a reference
/// parser's bug would give one: the registry part of a reference has no '/').
std::string memo_path(std::string_view registry) {
  if (registry.empty() || registry.size() > 255 || registry.front() == '.' ||
      registry.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos)
    return {};
  return std::string(kRegistriesDir) + "/" + std::string(registry);
}

std::int64_t seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

bool remembers_no_referrers_api(const repo::Repository& repo, std::string_view registry,
                                std::chrono::system_clock::time_point now) {
  const std::string rel = memo_path(registry);
  if (rel.empty()) return false;
  auto fd = sys::openat(repo.fd(), rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (!fd) return false;
  char buf[kMaxMemo + 1];
  auto n = sys::read_full(fd->get(), std::as_writable_bytes(std::span(buf)));
  if (!n || *n == 0 || *n > kMaxMemo) return false;
  std::string_view line(buf, *n);
  if (!line.starts_with(kNoApi) || !line.ends_with('\n')) return false;
  line = line.substr(kNoApi.size(), line.size() - kNoApi.size() - 1);
  const auto parsed = parse_decimal_u64(line);
  if (!parsed || *parsed > static_cast<std::uint64_t>(INT64_MAX)) return false;
  const auto at = static_cast<std::int64_t>(*parsed);
  const std::int64_t age = seconds(now) - at;
  return age >= -60 &&  // a clock set back a little; a memo from the future is no memo
         age < std::chrono::duration_cast<std::chrono::seconds>(kReferrersMemoMaxAge).count();
}

void remember_referrers_api(repo::Repository& repo, std::string_view registry, bool absent,
                            std::chrono::system_clock::time_point now) {
  const std::string rel = memo_path(registry);
  if (rel.empty()) return;
  if (!absent) {
    (void)sys::unlinkat(repo.fd(), rel, 0);
    return;
  }
  if (!sys::mkdirat_p(repo.fd(), std::string(kRegistriesDir), 0700)) return;
  auto f = AtomicFile::create(repo.path() + "/" + rel, 0600);
  if (!f) return;
  const std::string line = fmt::format("{}{}\n", kNoApi, seconds(now));
  if (!sys::write_all(f->fd(), std::as_bytes(std::span(line.data(), line.size())))) return;
  (void)f->commit(false);  // a hint: losing it to a crash costs one round trip
}

}  // namespace cfs::registry::detail
