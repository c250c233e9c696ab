// SPDX-License-Identifier: Apache-2.0
// One HTTP exchange over libcurl, with no policy: no retries, no authentication. The client
// (client.cc) layers those on top. Handles are pooled and share connections, DNS and TLS
// sessions, so sequential requests to a registry reuse one keep-alive connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cfs/registry/blob_io.h"
#include "cfs/registry/client.h"
#include "cfs/util/result.h"

namespace cfs::registry::detail {

/// `s` with ASCII A-Z lowered (header names, media types, auth schemes: case-insensitive by
/// their RFCs; no locale).
std::string ascii_lower(std::string_view s);

struct HttpHeaders {
  std::vector<std::pair<std::string, std::string>> list;  ///< names lowercased, in order
  /// The last value of a header (names compared lowercase), or nullopt.
  std::optional<std::string> get(std::string_view name) const;
  std::vector<std::string> all(std::string_view name) const;
};

struct HttpResponse {
  long status = 0;
  HttpHeaders headers;
  std::string body;  ///< non-2xx bodies always; 2xx bodies when the request has no on_data
  std::string effective_url;
  /// The URL asked when it is not the request's: a request built before its registry's scheme
  /// was known and answered over plain http (Client::Impl::probe).
  std::string asked_url;
  double retry_after_s = -1;  ///< Retry-After in seconds, -1 if absent
  /// Retries made before this (retryable) answer was given up on: http_error() says so.
  unsigned retries = 0;
};

/// Client certificate and extra CA files for one host (containers-certs.d(5)).
struct TlsFiles {
  std::vector<std::string> ca_files;
  std::string client_cert;
  std::string client_key;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::string> headers;  ///< "Name: value"
  bool verify_tls = true;
  const TlsFiles* tls_files = nullptr;
  /// Request body from memory (manifests, JSON) ...
  std::string_view body;
  /// ... or [source_offset, source_offset + source_length) of a source (blob uploads).
  BlobSource* source = nullptr;
  std::uint64_t source_offset = 0;
  std::uint64_t source_length = 0;
  /// Body bytes of a 2xx response go here (with the status and headers already known);
  /// everything else is collected into HttpResponse::body, at most max_body bytes.
  std::function<Status(const HttpResponse& head, std::span<const std::byte>)> on_data;
  std::size_t max_body = 4u << 20;
  /// Called as request body bytes go out (total sent so far in this request).
  std::function<void(std::uint64_t)> on_upload;
  /// The call's token (a child of the client's: fetch_blobs), cancelled from another thread to
  /// abort the transfer (ECANCELED); null: the client's.
  const CancelToken* cancel = nullptr;
  bool follow_redirects = false;
};

/// Network-level failures: ECONNREFUSED, ETIMEDOUT, ECONNRESET (worth retrying), EHOSTUNREACH,
/// EPROTO (TLS, malformed responses), ECANCELED; sink errors pass through unchanged.
bool is_transient(const Error& e);

class Http {
 public:
  Http(const ClientOptions& options);
  ~Http();
  Http(const Http&) = delete;
  Http& operator=(const Http&) = delete;

  /// One attempt. A response with any HTTP status is a value; only transport failures (and
  /// errors returned by on_data) are errors.
  Result<HttpResponse> perform(const HttpRequest& req);

  /// %-escapes a query parameter value.
  static std::string escape(std::string_view s);

  using Clock = std::chrono::steady_clock;
  /// Client::give_up_at: bounds perform()'s connection attempts and, through Backoff, the
  /// client's retries.
  void give_up_at(std::optional<Clock::time_point> at);
  std::optional<Clock::time_point> give_up() const;

  /// The handles, connections and CA stores the requests share (http.cc).
  struct Shared;

 private:
  std::unique_ptr<Shared> shared_;
  ClientOptions options_;
  /// Client::give_up_at as nanoseconds since the steady clock's epoch; 0: none.
  std::atomic<std::int64_t> give_up_ns_{0};
};

}  // namespace cfs::registry::detail
