// SPDX-License-Identifier: Apache-2.0
// The client's internals shared by client.cc (pull side) and push.cc.
#pragma once

#include <atomic>
#include <chrono>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cfs/registry/client.h"
#include "cfs/util/sys.h"
#include "registry/http.h"
#include "registry/progress_tracker.h"

namespace cfs::registry {

namespace detail {

/// The digest of bytes in memory, with the algorithm of the digest they are checked against.
inline oci::ContentDigest digest_bytes(std::string_view data, const std::string& algorithm) {
  oci::ContentHasher h(algorithm);
  h.update(std::as_bytes(std::span(data.data(), data.size())));
  return h.finish();
}

/// HTTP statuses worth another attempt: timeouts, rate limits, server errors.
bool retryable_status(long status);

/// The error for an HTTP status that is not the expected one, with the registry's error code
/// and message from the body.
Error http_error(const HttpRequest& req, const HttpResponse& resp);

/// A request given up on after `retries` retries (none: unchanged): an error says so in its
/// context, a response (a retryable status) carries the count for http_error() to say.
/// The words both add: " (gave up after N retries)", or nothing for none.
std::string gave_up_note(unsigned retries);
Error gave_up(Error e, unsigned retries);
Result<HttpResponse> gave_up(Result<HttpResponse> resp, unsigned retries);

/// Waits `seconds` before a retry, less when `token` (the client's, or a call's child of it) is
/// cancelled first.
void pause(const CancelToken& token, double seconds);

/// Exponential backoff: initial, 2x, 4x ... capped; Retry-After replaces the computed delay.
/// With a give-up time (Client::give_up_at), no retry whose wait would end after it.
class Backoff {
 public:
  explicit Backoff(const RetryOptions& o,
                   std::optional<std::chrono::steady_clock::time_point> give_up = {})
      : opts_(o), give_up_(give_up) {}
  /// The delay before the next attempt, or nullopt when the retries are used up (or the
  /// give-up time would pass first).
  std::optional<double> next(double retry_after_s);
  /// The delays next() handed out: the retries made so far.
  unsigned retries() const { return attempt_; }

 private:
  const RetryOptions& opts_;
  std::optional<std::chrono::steady_clock::time_point> give_up_;
  unsigned attempt_ = 0;
};

}  // namespace detail

using detail::ProgressTracker;

/// What a request needs to be authorised for: the credentials' key and the token scopes.
struct Access {
  std::string registry;    ///< as auth files name it ("docker.io", "127.0.0.1:5000")
  std::string repository;  ///< for namespaced credentials
  std::vector<std::string> scopes;

  std::string scope_key(const std::vector<std::string>& s) const {
    std::string k;
    for (const auto& x : s) k += x + " ";
    return k;
  }
};

struct Token {
  std::string value;
  std::chrono::steady_clock::time_point expires;
};

/// What the client learned about one registry host.
struct RegistryState {
  std::mutex mu;         // guards everything below; held while pinging and fetching tokens
  bool ready = false;    ///< host, registry and tls set (and the ping done when there is one)
  std::string host;      ///< API host[:port]
  std::string registry;  ///< the reference's registry name (for credentials)
  /// Whether the scheme is known: with TLS verification there is only https; without it, the
  /// first request learns it (Client::Impl::probe), or a ping does for a host without a port.
  std::atomic<bool> scheme_known{false};
  std::atomic<bool> plain_http{false};  ///< the scheme learned is http
  /// "https://host[:port]" or "http://..." (https while the scheme is not known yet).
  std::string base() const { return (plain_http.load() ? "http://" : "https://") + host; }
  std::string scheme;                         ///< "", "basic" or "bearer"
  std::map<std::string, std::string> params;  ///< realm, service of the challenge
  std::string last_scope;                     ///< scope named by the last 401
  std::map<std::string, Token> tokens;        ///< by scope set
  detail::TlsFiles tls;
  /// This registry answered a request of several ranges with a whole blob or one range: ranges
  /// are asked for one at a time from then on (Client::fetch_ranges).
  std::atomic<bool> no_multirange{false};
};

struct Client::Impl {
  explicit Impl(ClientOptions o);

  ClientOptions opts;
  detail::Http http;
  std::mutex states_mu;
  std::map<std::string, std::unique_ptr<RegistryState>> states;
  std::mutex creds_mu;
  std::map<std::string, std::optional<FoundCredentials>> creds_cache;
  std::mutex cb_mu;  // serialises progress callbacks

  static Access pull_access(const Reference& ref);
  static Access push_access(const Reference& ref, const std::vector<std::string>& mount_from);

  // Connection and authentication.
  Result<RegistryState*> state(const Reference& ref);
  Status load_tls_files(RegistryState& st, const std::string& host);
  Result<std::optional<FoundCredentials>> credentials(const std::string& registry,
                                                      const std::string& repository);
  Result<std::string> fetch_token(RegistryState& st, const Access& a,
                                  const std::vector<std::string>& scopes);
  Result<std::optional<std::string>> authorization(RegistryState& st, const Access& a,
                                                   bool refresh);
  bool same_origin(const RegistryState& st, const std::string& url) const;
  /// One attempt of a request to a registry whose scheme is not known yet (no TLS verification):
  /// https, then plain http when https fails, as containers/image's ping would; the scheme that
  /// answers is kept for every later request.
  Result<detail::HttpResponse> probe(RegistryState& st, detail::HttpRequest& req);
  /// One attempt over the scheme known (a request built before it was known is rebased).
  Result<detail::HttpResponse> perform_known(RegistryState& st, detail::HttpRequest& req);
  std::string url(RegistryState& st, const Reference& ref, const std::string& tail);
  std::string resolve(const RegistryState& st, const std::string& location) const;

  /// One attempt, authenticated (a 401 is answered once with fresh authorization).
  Result<detail::HttpResponse> send(RegistryState& st, const Access& a, detail::HttpRequest req);
  /// send() with retries on transient failures and retryable statuses (request bodies must be
  /// re-readable; no on_data).
  Result<detail::HttpResponse> call(RegistryState& st, const Access& a,
                                    const detail::HttpRequest& req, ProgressTracker* tr = nullptr,
                                    const std::string& id = {});
  Result<detail::HttpResponse> call_unauthenticated(const detail::HttpRequest& req);
  /// The response if its status is one of `ok`, else the error for it.
  Result<detail::HttpResponse> expect(Result<detail::HttpResponse> resp,
                                      const detail::HttpRequest& req, const Access& a,
                                      std::initializer_list<long> ok);
  /// Adds where the credentials came from to an EACCES error.
  Error denied(const Error& e, const Access& a);

  // Pull side (client.cc).
  Result<Manifest> get_manifest(const Reference& ref);
  Result<ContentInfo> stat_manifest(const Reference& ref);
  Result<std::optional<ContentInfo>> stat_blob(const Reference& ref, const oci::ContentDigest& d,
                                               const Access& a);
  Status fetch_one(const Reference& ref, const BlobFetch& f, const FetchOptions& o,
                   ProgressTracker& tr, const CancelToken& cancel);
  Status fetch_blobs(const Reference& ref, const std::vector<BlobFetch>& fetches,
                     const FetchOptions& o);
  Status fetch_range(const Reference& ref, const oci::ContentDigest& d, std::uint64_t offset,
                     std::uint64_t length, BlobSink& sink);
  Status fetch_ranges(const Reference& ref, const oci::ContentDigest& d,
                      std::span<const BlobRange> ranges);
  Result<std::vector<std::string>> list_tags(const Reference& ref);
  Result<Referrers> list_referrers(const Reference& ref, const oci::ContentDigest& subject,
                                   std::string_view artifact_type, ReferrersOrder order);
  Status check_login(const std::string& registry);

  // Push side (push.cc).
  Result<PushOutcome> push_blob(const Reference& ref, const oci::ContentDigest& d, BlobSource& src,
                                const PushOptions& po);
  Result<oci::ContentDigest> put_manifest(const Reference& ref, std::string_view media_type,
                                          std::string_view bytes);
  Status add_to_fallback_index(const Reference& ref, const oci::ContentDigest& subject,
                               const Descriptor& d);
};

}  // namespace cfs::registry
