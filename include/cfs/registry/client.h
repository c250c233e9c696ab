// SPDX-License-Identifier: Apache-2.0
// An OCI distribution-spec client on libcurl: manifests and blobs in both directions, with the
// authentication, TLS, retry and resume behaviour skopeo users expect. docs/registry.md is the
// user-level description; this header is the contract.
//
// Transport. The first request to a registry pings GET /v2/ to learn its scheme and auth
// challenge. With tls.verify (default) only https is used, against the system CAs plus any
// *.crt in the cert directory (and *.cert/*.key as a client certificate), as containers-certs.d
// (5) describes: cert_dir if given, else /etc/containers/certs.d/HOST[:PORT] and
// /etc/docker/certs.d/HOST[:PORT]. With tls.verify = false certificates are not checked and,
// like skopeo's --tls-verify=false, plain http is tried when https fails to connect.
//
// Authentication. Anonymous first; on a 401 the WWW-Authenticate challenge decides: Basic sends
// the credentials, Bearer fetches a token from the challenge's realm for the service and
// scope (repository:NAME:pull or pull,push), with Basic credentials if there are any, and
// caches it per scope until it expires. Credentials come from ClientOptions::creds or else the
// auth files (auth.h). A 401 after authenticating, or a 403, is an EACCES error naming the
// registry and where the credentials came from.
//
// Retries. Connection failures, timeouts, resets, HTTP 408/429/5xx, and downloads that end
// early are retried up to RetryOptions::max_retries times with exponential backoff (a 429/503's
// Retry-After is honoured, capped at max_delay_s). A download continues where it stopped with a
// Range request; one that cannot (the server answers 200) re-reads and discards the prefix.
// Uploads restart their current request (or ask the registry how much of a chunked upload
// arrived and continue there). Errors that are not retried: TLS failures, 4xx other than
// 408/429, digest mismatches, sink and source errors.
//
// Verification. Every manifest and blob is hashed while it arrives and compared with the digest
// asked for (manifests fetched by tag: with the registry's Docker-Content-Digest). A blob that is
// longer than its expected size is cut off with an error at once. A mismatch is
// Errc::kDigestMismatch with both digests; the sink must discard what it got (blob_io.h).
//
// Errors: EACCES (authentication/authorisation), Errc::kObjectMissing (404: manifest or blob
// unknown), ECONNREFUSED / ETIMEDOUT / ECONNRESET after the retries, EPROTO (TLS failure or a
// response that breaks the protocol), Errc::kDigestMismatch, Errc::kInvalidInput (bad
// reference, oversized manifest). The context names the method and URL, the HTTP status and the
// registry's error code and message ("GET https://r/v2/a/manifests/x: HTTP 404
// MANIFEST_UNKNOWN: manifest unknown").
//
// Cancellation. Client::cancel() (or the ClientOptions::cancel token it shares) stops the client
// for good: a transfer in flight aborts at once (its wait on its sockets is woken), a retry wait
// ends at once, and every call, running or later, fails with ECANCELED (not retried). What a
// cancelled download handed to its sink is the caller's to drop, as after any failure.
//
// Thread-safety: every method may be called from several threads at once; connections, tokens
// and the per-registry state are shared. A Client must outlive the calls on it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cfs/oci/image.h"
#include "cfs/registry/auth.h"
#include "cfs/registry/blob_io.h"
#include "cfs/registry/progress.h"
#include "cfs/registry/reference.h"
#include "cfs/util/result.h"

namespace cfs::registry {

/// Media types the client sends and recognises (image-spec and Docker's): the oci module's.
using oci::kDockerManifest;
using oci::kDockerManifestList;
using oci::kOciIndex;
using oci::kOciManifest;

struct TlsOptions {
  bool verify = true;                   ///< false: no certificate checks, plain http allowed
  std::optional<std::string> cert_dir;  ///< *.crt CAs, *.cert + *.key client certificate
};

struct RetryOptions {
  unsigned max_retries = 5;    ///< attempts after the first one
  double initial_delay_s = 1;  ///< first backoff; doubles each retry
  double max_delay_s = 30;     ///< cap on one wait, Retry-After included
};

/// A one-way switch that stops the registry work of every client sharing it (Cancellation above):
/// set from any thread, seen by transfers and retry waits. A child token (child()) is cancelled
/// by its own cancel() or when its parent is (at once: the parent's cancel() cancels it, waking
/// what waits on it); cancelling a child leaves the parent alone. fetch_blobs() runs its
/// transfers on a child of the client's token that its first failure cancels: one mechanism
/// stops a call's transfers and the whole client.
class CancelToken : public std::enable_shared_from_this<CancelToken> {
 public:
  CancelToken() = default;
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;
  ~CancelToken();

  /// A token cancelled with this one (already cancelled if this one is); it keeps this one
  /// alive. Only for a token owned by a shared_ptr.
  std::shared_ptr<CancelToken> child() const;

  void cancel();
  bool cancelled() const { return flag_.load(std::memory_order_relaxed); }
  /// Waits `seconds`, or less when cancel() comes first (a condition variable: no polling).
  /// Returns cancelled().
  bool wait_for(double seconds) const;
  /// For a transfer waiting on its sockets: `wake` is called (on the cancelling thread, at most
  /// once) when cancel() comes while it is subscribed. Returns the id for unsubscribe().
  std::uint64_t subscribe(std::function<void()> wake) const;
  void unsubscribe(std::uint64_t id) const;

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::atomic<bool> flag_{false};
  mutable std::map<std::uint64_t, std::function<void()>> wakes_;
  mutable std::uint64_t next_id_ = 0;
  // A child's parent and its subscription there (unsubscribed when the child goes).
  std::shared_ptr<const CancelToken> parent_;
  std::uint64_t parent_sub_ = 0;
};

struct ClientOptions {
  TlsOptions tls;
  /// Explicit credentials (--creds); otherwise the auth files are searched.
  std::optional<Credentials> creds;
  /// Where `creds` came from, as an authentication error names it.
  std::string creds_from = "--creds";
  /// --authfile: read first (and instead of the primary file); see auth.h.
  std::optional<std::string> auth_file;
  RetryOptions retry;
  long connect_timeout_s = 30;
  /// A transfer slower than low_speed_bytes per second for low_speed_time_s seconds is
  /// treated as a dropped connection (and retried).
  long low_speed_bytes = 1;
  long low_speed_time_s = 60;
  /// Blobs fetched at once by fetch_blobs().
  unsigned parallel = 4;
  /// Uploads larger than this go up in chunk_size PATCH requests (0 = always monolithic).
  std::uint64_t chunked_threshold = 128ull << 20;
  std::uint64_t chunk_size = 32ull << 20;
  ProgressCallback progress;
  std::string user_agent = "cfs";
  /// Stops this client (and any other sharing the token) when cancelled; null: the client makes
  /// a token of its own, which Client::cancel() sets.
  std::shared_ptr<CancelToken> cancel;
};

/// The media type a manifest's JSON declares in its "mediaType" member ("" if none or not
/// JSON). Docker v2 schema 2 and current OCI manifests carry one.
std::string declared_media_type(std::string_view manifest);

/// A manifest (or index) exactly as the registry sent it.
struct Manifest {
  std::string bytes;          ///< raw bytes: hash and store these, never a re-serialisation
  std::string media_type;     ///< Content-Type of the response (else the JSON mediaType)
  oci::ContentDigest digest;  ///< verified sha256 of `bytes`
};

/// What HEAD reports about a manifest or blob.
struct ContentInfo {
  oci::ContentDigest digest;
  std::uint64_t size = 0;
  std::string media_type;
};

/// One blob to download.
struct BlobFetch {
  oci::ContentDigest digest;
  std::optional<std::uint64_t> size;  ///< from the descriptor; enforced when given
  BlobSink* sink = nullptr;           ///< not owned
};

struct FetchOptions {
  /// Resumable downloads (blob_io.h). Without it, a retry still resumes inside this process.
  const DownloadDir* download_dir = nullptr;
  /// With a download_dir: keep the verified blob there (DIR/<alg>/<hex>), and serve a blob
  /// already there from disk (re-verified) instead of fetching it.
  bool keep = false;
};

enum class PushOutcome {
  kExisted,   ///< HEAD found it: nothing sent
  kMounted,   ///< cross-repository mount from PushOptions::mount_from
  kUploaded,  ///< sent (monolithic or chunked)
};

struct PushOptions {
  /// Repositories of the same registry that may hold the blob (tried in order with
  /// POST ?mount=&from= before uploading).
  std::vector<std::string> mount_from;
};

/// An OCI descriptor (the oci module's: cfs/oci/image.h).
using Descriptor = oci::Descriptor;

struct Referrers {
  std::vector<Descriptor> manifests;
  bool from_api = false;  ///< false: read from the sha256-<hex> fallback tag (or none found)
  /// The referrers API was asked and answered as a registry without it does (distribution 2.8:
  /// 404; also 400, 405, or a 200 that is not an image index).
  bool no_api = false;
};

/// Where Client::list_referrers looks first.
enum class ReferrersOrder {
  kApiThenTag,  ///< the referrers API; the fallback tag when the registry has no API
  /// The fallback tag; the API only when there is no such tag (a registry that has the API since
  /// makes none for its pushes): one request instead of two on a registry known to lack the API.
  kTagThenApi,
  kApiOnly,  ///< the API; nothing (no_api) when the registry has none
};

class Client {
 public:
  /// Sets up libcurl (global init once per process) and the options; no network I/O.
  static Result<Client> create(ClientOptions options);
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  /// GET the manifest `ref` names (by digest if it has one, else by tag), accepting OCI and
  /// Docker v2 schema 2 manifests and indexes/lists. At most 4 MiB.
  Result<Manifest> get_manifest(const Reference& ref);
  /// HEAD a manifest: its digest, size and media type; kObjectMissing if absent.
  Result<ContentInfo> stat_manifest(const Reference& ref);
  /// HEAD a blob in ref's repository: nullopt if the registry does not have it.
  Result<std::optional<ContentInfo>> stat_blob(const Reference& repo, const oci::ContentDigest& d);

  /// Streams one blob into fetch.sink, verified; resumable with options.download_dir.
  Status fetch_blob(const Reference& repo, const BlobFetch& fetch, const FetchOptions& options);
  /// Several blobs, ClientOptions::parallel at a time, largest first. Sinks are called from
  /// worker threads (each sink from one thread at a time). The first failure cancels the
  /// transfers not yet finished (their partial downloads are kept) and is returned.
  Status fetch_blobs(const Reference& repo, const std::vector<BlobFetch>& fetches,
                     const FetchOptions& options);
  /// Bytes [offset, offset + length) of a blob (HTTP Range; 206 expected). Cannot be verified
  /// here: the caller checks what it reads (e.g. against an fs-verity digest). Retries continue
  /// inside the range.
  Status fetch_range(const Reference& repo, const oci::ContentDigest& d, std::uint64_t offset,
                     std::uint64_t length, BlobSink& sink);

  /// Several ranges of a blob, each to its own sink, with one request (`Range: bytes=a-b,c-d`,
  /// answered `206 multipart/byteranges`, read strictly; docs/registry.md "Several ranges in one
  /// request"). One range over them all (coalesced) is sliced; a whole blob (200) or any other
  /// answer is cut off at its headers and remembered for the registry: the ranges are fetched
  /// one at a time (fetch_range), as is whatever a broken response did not bring. A malformed
  /// multipart body: EPROTO naming the blob and what was wrong (remembered too). Ranges: not
  /// overlapping, in the order the caller wants them first. Cannot be verified here.
  Status fetch_ranges(const Reference& repo, const oci::ContentDigest& d,
                      std::span<const BlobRange> ranges);

  /// Uploads a blob unless the repository has it: HEAD, then cross-repository mounts, then a
  /// monolithic POST + PUT (chunked PATCH uploads above ClientOptions::chunked_threshold).
  /// The registry verifies `d` against the bytes.
  Result<PushOutcome> push_blob(const Reference& repo, const oci::ContentDigest& d, BlobSource& src,
                                const PushOptions& options = {});
  /// PUT a manifest under ref's tag (or its digest when it has one). Returns the digest the
  /// registry confirmed (checked against the bytes). A manifest with a "subject" is also
  /// added to the subject's referrers fallback index (sha256-<hex> tag) unless the registry
  /// answered with OCI-Subject (it has the referrers API).
  Result<oci::ContentDigest> put_manifest(const Reference& ref, std::string_view media_type,
                                          std::string_view bytes);
  /// Tags of ref's repository (all pages).
  Result<std::vector<std::string>> list_tags(const Reference& repo);
  /// Manifests whose subject is `subject`: the referrers API, else the fallback tag (`order`).
  /// `artifact_type` (if not empty) filters.
  Result<Referrers> list_referrers(const Reference& repo, const oci::ContentDigest& subject,
                                   std::string_view artifact_type = {},
                                   ReferrersOrder order = ReferrersOrder::kApiThenTag);
  /// Checks that the registry accepts our credentials (GET /v2/, authenticating if
  /// challenged): what `cfs login` verifies before it stores them.
  Status check_login(const std::string& registry);

  /// Cancels the client's token (ClientOptions::cancel): transfers in flight abort, retry waits
  /// end, and this and every later call fails with ECANCELED. From any thread; cannot be undone.
  void cancel();

  /// Until `at` (steady clock), for a caller with something to fall back to when the registry
  /// cannot be reached (open_lazy_image: an image registered before): a failure is not retried
  /// when the wait before the retry would end after `at` (the call fails with its error at
  /// once), and a connection attempt gives up at `at` (at least 100 ms, at most
  /// ClientOptions::connect_timeout_s). A transfer that is making progress is not cut off.
  /// nullopt: the RetryOptions alone again. Seen by every attempt that starts afterwards, from
  /// any thread.
  void give_up_at(std::optional<std::chrono::steady_clock::time_point> at);

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cfs::registry
