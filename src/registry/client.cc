// SPDX-License-Identifier: Apache-2.0
// The distribution-spec client: per-registry state (scheme, challenge, tokens), the
// authenticate-and-retry layer over detail::Http, and pulls. Pushes are in push.cc.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "cfs/util/aligned_buffer.h"
#include "registry/challenge.h"
#include "registry/client_impl.h"
#include "registry/descriptors.h"
#include "registry/multipart.h"

namespace cfs::registry {

using detail::HttpRequest;
using detail::HttpResponse;
using detail::is_transient;

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kMaxManifestSize = 4u << 20;  // containers/image's limit too
constexpr std::size_t kMaxTokenResponse = 1u << 20;
constexpr std::size_t kCopyChunk = 1u << 20;

std::string accept_manifests() {
  return "Accept: " + std::string(kOciManifest) + ", " + std::string(kOciIndex) + ", " +
         std::string(kDockerManifest) + ", " + std::string(kDockerManifestList);
}

// The URL without its query (upload locations carry long opaque state).
std::string display_url(const std::string& url) { return url.substr(0, url.find('?')); }

std::string media_type_of(const HttpResponse& r) {
  std::string ct = r.headers.get("content-type").value_or("");
  ct = ct.substr(0, ct.find(';'));
  while (!ct.empty() && ct.back() == ' ') ct.pop_back();
  return ct;
}

// "bytes START-END/TOTAL" -> START.
std::optional<std::uint64_t> content_range_start(const std::string& v) {
  std::string_view s = v;
  if (!s.starts_with("bytes ")) return std::nullopt;
  s.remove_prefix(6);
  std::uint64_t start = 0;
  auto dash = s.find('-');
  if (dash == 0 || dash == std::string_view::npos) return std::nullopt;
  for (char c : s.substr(0, dash)) {
    if (c < '0' || c > '9') return std::nullopt;
    start = start * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return start;
}

}  // namespace

CancelToken::~CancelToken() {
  // Before the members go: the parent's cancel() may be calling this token's cancel() meanwhile
  // (unsubscribe waits for it).
  if (parent_) parent_->unsubscribe(parent_sub_);
}

std::shared_ptr<CancelToken> CancelToken::child() const {
  auto c = std::make_shared<CancelToken>();
  c->parent_ = shared_from_this();
  // The wake holds a plain pointer: it is unsubscribed before the child is destroyed.
  c->parent_sub_ = subscribe([p = c.get()] { p->cancel(); });
  // A cancel() before the subscription found no wake to call.
  if (cancelled()) c->cancel();
  return c;
}

void CancelToken::cancel() {
  {
    std::lock_guard g(mu_);  // a waiter between its check and its wait still sees the notify
    if (flag_.exchange(true)) return;
    for (auto& [id, wake] : wakes_) wake();
  }
  cv_.notify_all();
}

std::uint64_t CancelToken::subscribe(std::function<void()> wake) const {
  std::lock_guard g(mu_);
  wakes_.emplace(++next_id_, std::move(wake));
  return next_id_;
}

void CancelToken::unsubscribe(std::uint64_t id) const {
  std::lock_guard g(mu_);
  wakes_.erase(id);
}

bool CancelToken::wait_for(double seconds) const {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::duration<double>(std::max(0.0, seconds)),
               [&] { return cancelled(); });
  return cancelled();
}

namespace detail {

void pause(const CancelToken& token, double seconds) { token.wait_for(seconds); }

}  // namespace detail

namespace detail {

bool retryable_status(long status) {
  return status == 408 || status == 429 || status == 500 || status == 502 || status == 503 ||
         status == 504;
}

std::optional<double> Backoff::next(double retry_after_s) {
  if (attempt_ >= opts_.max_retries) return std::nullopt;
  double d = retry_after_s >= 0
                 ? retry_after_s
                 : opts_.initial_delay_s * std::pow(2.0, static_cast<double>(attempt_));
  d = std::min(d, opts_.max_delay_s);
  if (give_up_ && std::chrono::steady_clock::now() + std::chrono::duration<double>(d) > *give_up_)
    return std::nullopt;
  ++attempt_;
  return d;
}

std::string gave_up_note(unsigned retries) {
  return retries == 0 ? std::string() : " (gave up after " + std::to_string(retries) + " retries)";
}

Error gave_up(Error e, unsigned retries) {
  if (retries == 0) return e;
  return Error(e.code(), e.context() + gave_up_note(retries));
}

Result<HttpResponse> gave_up(Result<HttpResponse> resp, unsigned retries) {
  if (!resp) return fail(gave_up(std::move(resp).error(), retries));
  resp->retries = retries;  // the caller's http_error() names them
  return resp;
}

Error http_error(const HttpRequest& req, const HttpResponse& resp) {
  std::string what = req.method + " " +
                     display_url(resp.asked_url.empty() ? req.url : resp.asked_url) + ": HTTP " +
                     std::to_string(resp.status);
  // distribution-spec error body: {"errors": [{"code": "...", "message": "...", ...}]}
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) continue;
      if (e.contains("code") && e["code"].is_string()) what += " " + e["code"].get<std::string>();
      if (e.contains("message") && e["message"].is_string())
        what += ": " + e["message"].get<std::string>();
      break;
    }
  }
  what += gave_up_note(resp.retries);
  if (resp.status == 401 || resp.status == 403)
    return Error(std::error_code(EACCES, std::generic_category()), what);
  if (resp.status == 404) return Error(Errc::kObjectMissing, what);
  if (resp.status == 400) return Error(Errc::kInvalidInput, what);
  return Error(std::error_code(EPROTO, std::generic_category()), what);
}

}  // namespace detail

using detail::Backoff;
using detail::gave_up;
using detail::http_error;
using detail::retryable_status;

// Every client has a token (its own unless the options share one): Http and the retry waits
// need not ask whether there is one.
static ClientOptions with_token(ClientOptions o) {
  if (!o.cancel) o.cancel = std::make_shared<CancelToken>();
  return o;
}

Client::Impl::Impl(ClientOptions o) : opts(with_token(std::move(o))), http(opts) {}

Result<std::optional<FoundCredentials>> Client::Impl::credentials(const std::string& registry,
                                                                  const std::string& repository) {
  if (opts.creds)
    return std::make_optional(FoundCredentials{*opts.creds, opts.creds_from, registry});
  std::lock_guard g(creds_mu);
  std::string key = registry + "/" + repository;
  if (auto it = creds_cache.find(key); it != creds_cache.end()) return it->second;
  CFS_ASSIGN(auto found,
             lookup_credentials(auth_file_search_path(opts.auth_file), registry, repository));
  creds_cache[key] = found;
  return found;
}

// containers-certs.d(5): *.crt are CAs; NAME.cert + NAME.key a client certificate.
Status Client::Impl::load_tls_files(RegistryState& st, const std::string& host) {
  std::vector<std::string> dirs;
  if (opts.tls.cert_dir)
    dirs.push_back(*opts.tls.cert_dir);
  else
    dirs = {"/etc/containers/certs.d/" + host, "/etc/docker/certs.d/" + host};
  namespace fs = std::filesystem;
  for (const auto& dir : dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
      if (opts.tls.cert_dir)
        return fail(Errc::kInvalidInput, "--cert-dir " + dir + ": not a directory");
      continue;
    }
    std::vector<fs::path> entries;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
      entries.push_back(it->path());
    if (ec) return fail(Error(ec, "read " + dir));
    std::sort(entries.begin(), entries.end());
    for (const auto& p : entries) {
      std::string ext = p.extension().string();
      if (ext == ".crt") {
        st.tls.ca_files.push_back(p.string());
      } else if (ext == ".cert") {
        fs::path key = p;
        key.replace_extension(".key");
        if (!fs::exists(key, ec))
          return fail(Errc::kInvalidInput,
                      "client certificate " + p.string() + " has no " + key.filename().string());
        st.tls.client_cert = p.string();
        st.tls.client_key = key.string();
      } else if (ext == ".key") {
        fs::path cert = p;
        cert.replace_extension(".cert");
        if (!fs::exists(cert, ec))
          return fail(Errc::kInvalidInput,
                      "client key " + p.string() + " has no " + cert.filename().string());
      }
    }
  }
  return {};
}

// A host with a port: https and http are asked on the same port, so a TLS handshake that works
// means the registry speaks https there.
static bool has_port(const std::string& host) {
  const auto colon = host.rfind(':');
  return colon != std::string::npos && host.find(']', colon) == std::string::npos &&
         colon + 1 < host.size();
}

Result<RegistryState*> Client::Impl::state(const Reference& ref) {
  std::string host = ref.api_host();
  RegistryState* st;
  {
    std::lock_guard g(states_mu);
    auto& slot = states[host];
    if (!slot) slot = std::make_unique<RegistryState>();
    st = slot.get();
  }
  std::lock_guard g(st->mu);
  if (st->ready) return st;
  st->host = host;
  st->registry = ref.registry;
  CFS_TRY(load_tls_files(*st, host));
  // No ping (GET /v2/) before the first request: that request's own answer says what a ping's
  // would (a 401 carries the same challenge, which send() learns from), and the ping was a round
  // trip and ~1 ms of registry CPU on the way to every lazy mount's first byte. With TLS
  // verification the scheme is https; without it, the first request tries https and then
  // plain http on the same port (probe()). Only a host without a port is still pinged without
  // verification: its two schemes are two ports, and a web server on 443 must not be taken for
  // the registry on 80 (the ping's 200 or 401 is what tells the API).
  if (opts.tls.verify || has_port(host)) {
    st->scheme_known = opts.tls.verify;
    st->ready = true;
    return st;
  }
  Backoff backoff(opts.retry, http.give_up());
  while (true) {
    std::optional<Error> err;
    for (const char* scheme : {"https", "http"}) {
      HttpRequest req;
      req.url = std::string(scheme) + "://" + host + "/v2/";
      req.verify_tls = false;
      req.tls_files = &st->tls;
      auto resp = http.perform(req);
      if (!resp) {
        // Keep the https error unless it was the TLS handshake failing against plain http.
        if (!err || err->is_errno(EPROTO)) err = resp.error();
        continue;
      }
      // The distribution spec answers /v2/ with 200 or 401. Anything else (an https port
      // answering plain http with 400, say) is not the API: keep looking, keep the first error.
      if (resp->status != 200 && resp->status != 401) {
        if (!err)
          err = Error(std::error_code(EPROTO, std::generic_category()),
                      "GET " + req.url + ": HTTP " + std::to_string(resp->status) +
                          ", not a registry API endpoint");
        continue;
      }
      st->plain_http = std::string_view(scheme) == "http";
      st->scheme_known = true;
      if (resp->status == 401)
        for (const auto& h : resp->headers.all("www-authenticate"))
          for (auto& ch : detail::parse_challenges(h))
            if (ch.scheme == "bearer" || (ch.scheme == "basic" && st->scheme != "bearer")) {
              st->scheme = ch.scheme;
              st->params = ch.params;
            }
      st->ready = true;
      return st;
    }
    if (!is_transient(*err)) return fail(std::move(*err));
    auto delay = backoff.next(-1);
    if (!delay) return fail(gave_up(std::move(*err), backoff.retries()));
    detail::pause(*opts.cancel, *delay);
  }
}

Result<HttpResponse> Client::Impl::perform_known(RegistryState& st, HttpRequest& req) {
  // A request built while the scheme was not known (another thread learned it meanwhile) is
  // https: sent over the scheme learned, and its errors name the URL asked.
  if (!st.plain_http) return http.perform(req);
  const std::string tls_base = "https://" + st.host + "/";
  if (!req.url.starts_with(tls_base)) return http.perform(req);
  req.url = st.base() + "/" + req.url.substr(tls_base.size());
  return http.perform(req);
}

// Requests sent at once before the scheme is known each probe on their own (a lock held until
// one learned it would be held for a whole transfer, a stalled one included); they learn the
// same scheme.
Result<HttpResponse> Client::Impl::probe(RegistryState& st, HttpRequest& req) {
  const std::string tls_base = "https://" + st.host;
  // Another request learned the scheme meanwhile, or this one is not to the registry.
  if (st.scheme_known || !req.url.starts_with(tls_base + "/")) return perform_known(st, req);
  auto tls = http.perform(req);
  if (tls) {  // the handshake worked: the port speaks https
    st.scheme_known = true;
    return tls;
  }
  const std::string asked = req.url;
  req.url = "http://" + st.host + asked.substr(tls_base.size());
  auto plain = http.perform(req);
  if (!plain) {
    // The http error tells more when https failed only because the port speaks plain http
    // (connection refused, say); otherwise the https error is the one to report.
    if (tls.error().is_errno(EPROTO)) return plain;
    return tls;
  }
  // An https port answers a plain request with 400 (Go's and nginx's servers); a registry's own
  // 400 says which API it is. Then the https error is the one that tells what went wrong.
  if (plain->status == 400 && !plain->headers.get("docker-distribution-api-version")) return tls;
  st.plain_http = true;
  st.scheme_known = true;
  return plain;
}

Result<std::string> Client::Impl::fetch_token(RegistryState& st, const Access& a,
                                              const std::vector<std::string>& scopes) {
  auto realm = st.params.find("realm");
  if (realm == st.params.end() || realm->second.empty())
    return fail(Error(std::error_code(EPROTO, std::generic_category()),
                      "registry " + st.host + ": Bearer challenge without a realm"));
  std::string url = realm->second;
  char sep = url.find('?') == std::string::npos ? '?' : '&';
  if (auto svc = st.params.find("service"); svc != st.params.end()) {
    url += sep + std::string("service=") + detail::Http::escape(svc->second);
    sep = '&';
  }
  for (const auto& s : scopes) {
    url += sep + std::string("scope=") + detail::Http::escape(s);
    sep = '&';
  }
  CFS_ASSIGN(auto creds, credentials(a.registry, a.repository));
  HttpRequest req;
  req.url = url;
  req.verify_tls = opts.tls.verify;
  req.tls_files = &st.tls;
  req.max_body = kMaxTokenResponse;
  req.follow_redirects = true;
  if (creds) req.headers.push_back("Authorization: Basic " + encode_basic(creds->creds));
  CFS_ASSIGN(auto resp, call_unauthenticated(req));
  if (resp.status == 401 || resp.status == 403) {
    std::string who =
        creds ? "credentials of " + creds->creds.username + " (from " + creds->file + ")"
              : "anonymous access (no credentials found; see cfs login)";
    return fail(Error(std::error_code(EACCES, std::generic_category()),
                      "token server " + display_url(url) + " refused " + who));
  }
  if (resp.status != 200) return fail(http_error(req, resp));
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  std::string token;
  if (j.is_object()) {
    for (const char* name : {"token", "access_token"})
      if (j.contains(name) && j[name].is_string() && !j[name].get<std::string>().empty()) {
        token = j[name].get<std::string>();
        break;
      }
  }
  if (token.empty())
    return fail(Error(std::error_code(EPROTO, std::generic_category()),
                      "token server " + display_url(url) + ": no token in its answer"));
  // The token spec: expires_in defaults to 60 s and is never taken as less.
  double expires = 60;
  if (j.contains("expires_in") && j["expires_in"].is_number())
    expires = std::max(60.0, j["expires_in"].get<double>());
  st.tokens[a.scope_key(scopes)] =
      Token{token, Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(expires - 10))};
  return token;
}

Result<std::optional<std::string>> Client::Impl::authorization(RegistryState& st, const Access& a,
                                                               bool refresh) {
  std::lock_guard g(st.mu);
  if (st.scheme == "basic") {
    CFS_ASSIGN(auto creds, credentials(a.registry, a.repository));
    if (!creds) return std::nullopt;
    return std::make_optional("Basic " + encode_basic(creds->creds));
  }
  if (st.scheme != "bearer") return std::nullopt;
  std::vector<std::string> scopes = a.scopes;
  // A 401 can name the scope it wants (error="insufficient_scope"): ask for that too.
  if (refresh && !st.last_scope.empty() &&
      std::find(scopes.begin(), scopes.end(), st.last_scope) == scopes.end())
    scopes.push_back(st.last_scope);
  std::string key = a.scope_key(scopes);
  if (!refresh)
    if (auto it = st.tokens.find(key); it != st.tokens.end() && Clock::now() < it->second.expires)
      return std::make_optional("Bearer " + it->second.value);
  CFS_ASSIGN(auto token, fetch_token(st, a, scopes));
  return std::make_optional("Bearer " + token);
}

Result<HttpResponse> Client::Impl::call_unauthenticated(const HttpRequest& req) {
  Backoff backoff(opts.retry, http.give_up());
  while (true) {
    auto resp = http.perform(req);
    double retry_after = -1;
    if (resp && !retryable_status(resp->status)) return resp;
    if (!resp && !is_transient(resp.error())) return resp;
    if (resp) retry_after = resp->retry_after_s;
    auto delay = backoff.next(retry_after);
    if (!delay) return gave_up(std::move(resp), backoff.retries());
    detail::pause(req.cancel ? *req.cancel : *opts.cancel, *delay);
  }
}

bool Client::Impl::same_origin(const RegistryState& st, const std::string& url) const {
  return url.starts_with(st.base() + "/");
}

Result<HttpResponse> Client::Impl::send(RegistryState& st, const Access& a, HttpRequest req) {
  bool refreshed = false;
  bool challenged = false;            // a 401 answered a request without authorization
  const std::string asked = req.url;  // the caller's: its scheme may not be the one learned
  std::size_t plain_headers = req.headers.size();
  while (true) {
    req.headers.resize(plain_headers);
    bool authorized = false;
    if (same_origin(st, req.url)) {
      CFS_ASSIGN(auto auth, authorization(st, a, refreshed));
      if (auth) req.headers.push_back("Authorization: " + *auth);
      authorized = auth.has_value();
    }
    req.verify_tls = opts.tls.verify;
    req.tls_files = &st.tls;
    CFS_ASSIGN(auto resp, st.scheme_known ? perform_known(st, req) : probe(st, req));
    if (req.url != asked) resp.asked_url = req.url;  // for the caller's error messages
    if (resp.status != 401 || refreshed) return resp;
    // Learn from the challenge (the scheme may not have been announced by the ping, or the
    // token lacks a scope) and try once more with fresh authorization.
    bool usable = false;
    {
      std::lock_guard g(st.mu);
      for (const auto& h : resp.headers.all("www-authenticate"))
        for (auto& ch : detail::parse_challenges(h)) {
          if (ch.scheme != "bearer" && ch.scheme != "basic") continue;
          usable = true;
          st.scheme = ch.scheme;
          if (auto s = ch.params.find("scope"); s != ch.params.end()) st.last_scope = s->second;
          st.params = std::move(ch.params);
        }
    }
    if (!usable) return resp;
    if (st.scheme == "basic") {
      CFS_ASSIGN(auto creds, credentials(a.registry, a.repository));
      if (!creds) return resp;  // nothing new to offer
    }
    // The first challenge of a request sent without authorization is what the ping used to
    // learn: answering it is not the one refresh (a token that then lacks a scope the registry
    // names still gets its second chance).
    if (!authorized && !challenged) {
      challenged = true;
      continue;
    }
    refreshed = true;
  }
}

Result<HttpResponse> Client::Impl::call(RegistryState& st, const Access& a, const HttpRequest& req,
                                        ProgressTracker* tr, const std::string& id) {
  Backoff backoff(opts.retry, http.give_up());
  while (true) {
    auto resp = send(st, a, req);
    std::string why;
    double retry_after = -1;
    if (resp) {
      if (!retryable_status(resp->status)) return resp;
      why = "HTTP " + std::to_string(resp->status);
      retry_after = resp->retry_after_s;
    } else {
      if (!is_transient(resp.error())) return resp;
      why = resp.error().message();
    }
    auto delay = backoff.next(retry_after);
    if (!delay) return gave_up(std::move(resp), backoff.retries());
    if (tr) tr->retry(id, *delay, why);
    detail::pause(req.cancel ? *req.cancel : *opts.cancel, *delay);
  }
}

Error Client::Impl::denied(const Error& e, const Access& a) {
  if (!e.is_errno(EACCES)) return e;
  auto creds = credentials(a.registry, a.repository);
  std::string hint = creds && *creds ? " (credentials of " + (*creds)->creds.username + " from " +
                                           (*creds)->file + ")"
                                     : " (no credentials: use cfs login or --creds)";
  return Error(e.code(), e.context() + hint);
}

Result<HttpResponse> Client::Impl::expect(Result<HttpResponse> resp, const HttpRequest& req,
                                          const Access& a, std::initializer_list<long> ok) {
  if (!resp) return resp;
  if (std::find(ok.begin(), ok.end(), resp->status) != ok.end()) return resp;
  return fail(denied(http_error(req, *resp), a));
}

Access Client::Impl::pull_access(const Reference& ref) {
  return Access{ref.registry, ref.repository, {"repository:" + ref.repository + ":pull"}};
}

std::string Client::Impl::url(RegistryState& st, const Reference& ref, const std::string& tail) {
  return st.base() + "/v2/" + ref.repository + "/" + tail;
}

Result<Manifest> Client::Impl::get_manifest(const Reference& ref) {
  CFS_ASSIGN(auto* st, state(ref));
  Access a = pull_access(ref);
  HttpRequest req;
  req.url = url(*st, ref, "manifests/" + ref.manifest_reference());
  req.headers.push_back(accept_manifests());
  req.max_body = kMaxManifestSize;
  req.follow_redirects = true;
  CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {200}));
  Manifest m;
  m.bytes = std::move(resp.body);
  m.media_type = media_type_of(resp);
  std::optional<oci::ContentDigest> want;
  std::string source;
  if (!ref.digest.empty()) {
    CFS_ASSIGN(want, oci::ContentDigest::parse(ref.digest));
    source = "the reference";
  } else if (auto h = resp.headers.get("docker-content-digest")) {
    CFS_ASSIGN(want, oci::ContentDigest::parse(*h).map_error([&](Error e) {
      return std::move(e).with_context("Docker-Content-Digest of " + ref.str());
    }));
    source = "Docker-Content-Digest";
  }
  m.digest = detail::digest_bytes(m.bytes, want ? want->algorithm : "sha256");
  if (want && *want != m.digest)
    return fail(Errc::kDigestMismatch, "manifest " + ref.str() + ": received " +
                                           std::to_string(m.bytes.size()) + " bytes with digest " +
                                           m.digest.str() + ", " + source + " says " + want->str());
  std::string declared = declared_media_type(m.bytes);
  if (m.media_type.empty() || m.media_type == "application/json" || m.media_type == "text/plain")
    m.media_type = declared;
  return m;
}

Result<ContentInfo> Client::Impl::stat_manifest(const Reference& ref) {
  CFS_ASSIGN(auto* st, state(ref));
  Access a = pull_access(ref);
  HttpRequest req;
  req.method = "HEAD";
  req.url = url(*st, ref, "manifests/" + ref.manifest_reference());
  req.headers.push_back(accept_manifests());
  req.follow_redirects = true;
  CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {200}));
  auto h = resp.headers.get("docker-content-digest");
  if (!h) {
    // The digest header is optional in the spec: hash the manifest instead.
    CFS_ASSIGN(auto m, get_manifest(ref));
    return ContentInfo{m.digest, m.bytes.size(), m.media_type};
  }
  CFS_ASSIGN(auto d, oci::ContentDigest::parse(*h));
  std::uint64_t size = 0;
  if (auto cl = resp.headers.get("content-length")) size = std::strtoull(cl->c_str(), nullptr, 10);
  return ContentInfo{d, size, media_type_of(resp)};
}

Result<std::optional<ContentInfo>> Client::Impl::stat_blob(const Reference& ref,
                                                           const oci::ContentDigest& d,
                                                           const Access& a) {
  CFS_ASSIGN(auto* st, state(ref));
  HttpRequest req;
  req.method = "HEAD";
  req.url = url(*st, ref, "blobs/" + d.str());
  req.follow_redirects = true;
  CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {200, 404}));
  if (resp.status == 404) return std::nullopt;
  std::uint64_t size = 0;
  if (auto cl = resp.headers.get("content-length")) size = std::strtoull(cl->c_str(), nullptr, 10);
  return std::make_optional(ContentInfo{d, size, media_type_of(resp)});
}

Status Client::Impl::fetch_one(const Reference& ref, const BlobFetch& f, const FetchOptions& o,
                               ProgressTracker& tr, const CancelToken& cancel) {
  if (!f.sink) return fail(Errc::kInvalidInput, "fetch of " + f.digest.str() + " without a sink");
  const std::string id = f.digest.str();
  const std::string what = "blob " + id;
  CFS_ASSIGN(auto* st, state(ref));
  Access a = pull_access(ref);
  std::optional<oci::ContentHasher> hasher(std::in_place, f.digest.algorithm);
  std::uint64_t delivered = 0;
  auto deliver = [&](std::span<const std::byte> data) -> Status {
    hasher->update(data);
    CFS_TRY(f.sink->write(data));
    delivered += data.size();
    return {};
  };

  // A verified copy kept by an earlier fetch is served from disk (and verified again).
  if (o.download_dir && o.keep) {
    CFS_ASSIGN(auto fd, o.download_dir->open_complete(f.digest));
    if (fd) {
      AlignedBuffer aligned;
      const std::span<std::byte> buf = aligned.get(kCopyChunk);
      for (std::uint64_t off = 0;; off += buf.size()) {
        CFS_ASSIGN(auto got, sys::pread_full(fd->get(), buf, off));
        if (got) CFS_TRY(deliver(std::span(buf.data(), got)));
        if (got < buf.size()) break;
      }
      bool good = hasher->finish() == f.digest && (!f.size || delivered == *f.size);
      hasher.emplace(f.digest.algorithm);
      if (good) {
        tr.finish(id, TransferEvent::Kind::kSkipped, "already downloaded");
        return {};
      }
      CFS_TRY(o.download_dir->remove(f.digest));
      CFS_TRY(f.sink->restart());
      delivered = 0;
    }
  }
  std::optional<PartialBlob> partial;
  std::uint64_t resumed_from = 0;
  if (o.download_dir) {
    CFS_ASSIGN(auto p, o.download_dir->begin(f.digest));
    partial.emplace(std::move(p));
    if (o.keep) {
      // Another process may have completed it while we waited for the lock.
      CFS_ASSIGN(auto done, o.download_dir->open_complete(f.digest));
      if (done) {
        CFS_TRY(partial->finish(false));
        return fetch_one(ref, f, o, tr, cancel);
      }
    }
    if (f.size && partial->size() > *f.size) CFS_TRY(partial->truncate());
    if (partial->size() > 0) {
      CFS_TRY(partial->replay(deliver));
      resumed_from = delivered;
    }
  }
  tr.start(id, TransferEvent::Direction::kDownload, f.size, resumed_from);
  auto failed = [&](Error e) {
    tr.finish(id, TransferEvent::Kind::kFailed, e.message());
    return fail(std::move(e));
  };

  bool restarted = false;
  while (true) {
    Backoff backoff(opts.retry, http.give_up());
    while (!(f.size && delivered == *f.size)) {
      if (cancel.cancelled()) return fail_errno(what, ECANCELED);
      HttpRequest req;
      req.url = url(*st, ref, "blobs/" + id);
      req.follow_redirects = true;
      req.cancel = &cancel;
      const std::uint64_t asked_from = delivered;
      if (asked_from > 0) req.headers.push_back("Range: bytes=" + std::to_string(asked_from) + "-");
      std::uint64_t skip = 0;
      bool head_seen = false;
      // curl hands over a body in 16 KiB pieces whatever its buffer size; they are gathered
      // into larger ones before the partial file and the sink see them (one write and one
      // hand-over to the importing thread per piece; bench/README.md, session 9), as large as
      // the sink asks (BlobSink::gather_bytes; the partial file's writes as large as the
      // sink's). Whatever arrived is passed on when the response ends, however it ends.
      const std::size_t gather = f.sink->gather_bytes();
      std::vector<std::byte> gathered;
      gathered.reserve(2 * std::max<std::size_t>(gather, 16u << 10));
      auto pass_on = [&]() -> Status {
        if (gathered.empty()) return {};
        Status passed = [&]() -> Status {
          if (partial) CFS_TRY(partial->append(gathered));
          return deliver(gathered);
        }();
        gathered.clear();  // never passed on twice, even after a failure
        CFS_TRY(passed);
        tr.progress(id, delivered);
        return {};
      };
      req.on_data = [&](const HttpResponse& head, std::span<const std::byte> data) -> Status {
        if (!head_seen) {
          head_seen = true;
          if (asked_from > 0 && head.status == 206) {
            auto start = content_range_start(head.headers.get("content-range").value_or(""));
            if (start != asked_from)
              return fail_errno(what + ": asked for bytes from " + std::to_string(asked_from) +
                                    ", the registry sent Content-Range '" +
                                    head.headers.get("content-range").value_or("") + "'",
                                EPROTO);
          } else if (asked_from > 0) {
            skip = asked_from;  // 200: the whole blob again; drop what we already have
          }
        }
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(skip, data.size()));
        skip -= n;
        data = data.subspan(n);
        if (data.empty()) return {};
        if (f.size && delivered + gathered.size() + data.size() > *f.size)
          return fail(Errc::kDigestMismatch, what + ": the registry sent more than the " +
                                                 std::to_string(*f.size) +
                                                 " bytes its descriptor gives");
        gathered.insert(gathered.end(), data.begin(), data.end());
        if (gathered.size() >= gather) return pass_on();
        return {};
      };
      auto resp = send(*st, a, req);
      if (auto st_pass = pass_on(); !st_pass) return failed(std::move(st_pass).error());
      std::string why;
      double retry_after = -1;
      if (!resp) {
        if (!is_transient(resp.error())) return failed(resp.error());
        why = resp.error().message();
      } else if (resp->status == 200 || resp->status == 206) {
        if (!f.size) break;  // unknown size: the response's end is the blob's end
        if (delivered == *f.size) break;
        why = what + ": the response ended after " + std::to_string(delivered) + " of " +
              std::to_string(*f.size) + " bytes";
      } else if (resp->status == 416 && asked_from > 0 && !f.size) {
        break;  // nothing past what we have: the digest check decides
      } else if (retryable_status(resp->status)) {
        why = what + ": HTTP " + std::to_string(resp->status);
        retry_after = resp->retry_after_s;
      } else {
        return failed(denied(http_error(req, *resp), a));
      }
      auto delay = backoff.next(retry_after);
      if (!delay)
        return failed(gave_up(Error(std::error_code(ECONNRESET, std::generic_category()), why),
                              backoff.retries()));
      tr.retry(id, *delay, why);
      detail::pause(cancel, *delay);
    }
    oci::ContentDigest got = hasher->finish();
    hasher.emplace(f.digest.algorithm);
    if (got == f.digest && (!f.size || delivered == *f.size)) break;
    std::string msg =
        what + ": received " + std::to_string(delivered) + " bytes with digest " + got.str();
    if (f.size && delivered != *f.size) msg += ", expected " + std::to_string(*f.size) + " bytes";
    if (resumed_from > 0) msg += " (resumed at byte " + std::to_string(resumed_from) + ")";
    // Wrong bytes: start over once if the sink can (a damaged partial file from a crash, or a
    // transient corruption on the way); a registry that keeps sending them is reported.
    if (partial) CFS_TRY(partial->truncate());
    if (restarted || !f.sink->restart()) {
      if (partial) CFS_TRY(partial->finish(false));
      return failed(Error(Errc::kDigestMismatch, msg));
    }
    restarted = true;
    delivered = 0;
    resumed_from = 0;
    tr.progress(id, 0);
    tr.retry(id, 0, msg + "; starting over");
  }
  if (partial) CFS_TRY(partial->finish(o.keep));
  tr.finish(id, TransferEvent::Kind::kDone);
  return {};
}

Status Client::Impl::fetch_blobs(const Reference& ref, const std::vector<BlobFetch>& fetches,
                                 const FetchOptions& o) {
  ProgressTracker tr(opts.progress, cb_mu);
  std::vector<const BlobFetch*> order;
  for (const auto& f : fetches) order.push_back(&f);
  // Largest first: the long transfers start at once and the small ones fill the gaps, so the
  // total time approaches that of the largest blob. Unknown sizes count as largest.
  std::stable_sort(order.begin(), order.end(), [](const BlobFetch* x, const BlobFetch* y) {
    return x->size.value_or(UINT64_MAX) > y->size.value_or(UINT64_MAX);
  });
  for (const auto* f : order) tr.expect(f->digest.str(), f->size);
  CFS_TRY(state(ref));
  std::atomic<std::size_t> next{0};
  // The first failure stops the other transfers at once (their waits on their sockets and in
  // retry pauses are woken), as the client's cancel() does, which cancels this too.
  const std::shared_ptr<CancelToken> cancel = opts.cancel->child();
  std::mutex err_mu;
  std::optional<Error> first;
  auto worker = [&] {
    while (true) {
      std::size_t k = next.fetch_add(1);
      if (k >= order.size() || cancel->cancelled()) return;
      auto st = fetch_one(ref, *order[k], o, tr, *cancel);
      if (!st) {
        {
          std::lock_guard g(err_mu);
          if (!first || first->is_errno(ECANCELED)) first = st.error();
        }
        cancel->cancel();
      }
    }
  };
  unsigned n = std::max(1u, std::min<unsigned>(opts.parallel, static_cast<unsigned>(order.size())));
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < n; ++i) threads.emplace_back(worker);
  worker();
  for (auto& t : threads) t.join();
  if (first) return fail(std::move(*first));
  return {};
}

Status Client::Impl::fetch_range(const Reference& ref, const oci::ContentDigest& d,
                                 std::uint64_t offset, std::uint64_t length, BlobSink& sink) {
  if (length == 0) return {};
  CFS_ASSIGN(auto* st, state(ref));
  Access a = pull_access(ref);
  const std::string what =
      "blob " + d.str() + " bytes " + std::to_string(offset) + "+" + std::to_string(length);
  std::uint64_t got = 0;
  Backoff backoff(opts.retry, http.give_up());
  while (got < length) {
    HttpRequest req;
    req.url = url(*st, ref, "blobs/" + d.str());
    req.follow_redirects = true;
    const std::uint64_t from = offset + got;
    req.headers.push_back("Range: bytes=" + std::to_string(from) + "-" +
                          std::to_string(offset + length - 1));
    std::uint64_t skip = 0;
    bool head_seen = false;
    bool enough = false;
    req.on_data = [&](const HttpResponse& head, std::span<const std::byte> data) -> Status {
      if (!head_seen) {
        head_seen = true;
        if (head.status == 206) {
          auto start = content_range_start(head.headers.get("content-range").value_or(""));
          if (start != from)
            return fail_errno(what + ": the registry sent Content-Range '" +
                                  head.headers.get("content-range").value_or("") + "'",
                              EPROTO);
        } else {
          skip = from;  // no range support: read up to the range and past it
        }
      }
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(skip, data.size()));
      skip -= n;
      data = data.subspan(n);
      std::size_t take =
          static_cast<std::size_t>(std::min<std::uint64_t>(data.size(), length - got));
      if (take) CFS_TRY(sink.write(data.first(take)));
      got += take;
      if (got == length && take < data.size()) {
        enough = true;  // the server sent more than asked: stop reading
        return fail_errno("range complete", ECANCELED);
      }
      return {};
    };
    auto resp = send(*st, a, req);
    if (enough) return {};
    std::string why;
    double retry_after = -1;
    if (!resp) {
      if (!is_transient(resp.error())) return fail(resp.error());
      why = resp.error().message();
    } else if (resp->status == 200 || resp->status == 206) {
      if (got == length) return {};
      why = what + ": the response ended after " + std::to_string(got) + " bytes";
    } else if (retryable_status(resp->status)) {
      why = what + ": HTTP " + std::to_string(resp->status);
      retry_after = resp->retry_after_s;
    } else {
      return fail(denied(http_error(req, *resp), a));
    }
    auto delay = backoff.next(retry_after);
    if (!delay)
      return fail(gave_up(Error(std::error_code(ECONNRESET, std::generic_category()), why),
                          backoff.retries()));
    detail::pause(*opts.cancel, *delay);
  }
  return {};
}

Status Client::Impl::fetch_ranges(const Reference& ref, const oci::ContentDigest& d,
                                  std::span<const BlobRange> ranges) {
  CFS_ASSIGN(auto* st, state(ref));
  std::vector<std::uint64_t> got(ranges.size());
  // One request for them all, unless this registry answered such a request with the whole blob
  // or with less than was asked before (then each range is a request of its own, below).
  const bool empty =
      std::any_of(ranges.begin(), ranges.end(), [](const BlobRange& r) { return r.length == 0; });
  if (ranges.size() > 1 && !empty && !st->no_multirange.load(std::memory_order_relaxed)) {
    Access a = pull_access(ref);
    const std::string what = "blob " + d.str();
    HttpRequest req;
    req.url = url(*st, ref, "blobs/" + d.str());
    req.follow_redirects = true;
    std::string spec = "Range: bytes=";
    std::vector<detail::ByterangesReader::Range> asked;
    std::uint64_t lo = UINT64_MAX, hi = 0, total = 0;
    for (const auto& r : ranges) {
      if (!asked.empty()) spec += ',';
      spec += std::to_string(r.offset) + "-" + std::to_string(r.offset + r.length - 1);
      asked.push_back({r.offset, r.length});
      lo = std::min(lo, r.offset);
      hi = std::max(hi, r.offset + r.length);
      total += r.length;
    }
    req.headers.push_back(std::move(spec));
    // By offset: a single range that covers them all (a server may coalesce) is sliced.
    std::vector<std::size_t> by_offset(ranges.size());
    for (std::size_t i = 0; i < by_offset.size(); ++i) by_offset[i] = i;
    std::sort(by_offset.begin(), by_offset.end(),
              [&](std::size_t x, std::size_t y) { return ranges[x].offset < ranges[y].offset; });
    std::optional<detail::ByterangesReader> reader;
    bool head_seen = false, unusable = false, enough = false, malformed = false;
    std::uint64_t pos = 0;  // of the single range's next byte, in the blob
    std::size_t next = 0;   // in by_offset
    std::optional<Error> sink_error;
    auto give = [&](std::size_t i, std::span<const std::byte> b) -> Status {
      auto s = ranges[i].sink->write(b);
      if (!s) sink_error = s.error();
      got[i] += b.size();
      return s;
    };
    req.on_data = [&](const HttpResponse& head, std::span<const std::byte> data) -> Status {
      if (!head_seen) {
        head_seen = true;
        if (head.status == 206) {
          const std::string type = head.headers.get("content-type").value_or("");
          if (auto boundary = detail::byteranges_boundary(type)) {
            reader.emplace(what, *boundary, asked, give);
          } else {
            auto one = detail::parse_content_range(head.headers.get("content-range").value_or(""));
            // A coalesced range is read only when it covers the ranges asked and holds at most
            // as many other bytes as asked ones: never a whole blob's worth of gaps.
            if (one && one->first <= lo && one->second + 1 >= hi &&
                one->second + 1 - one->first <= 2 * total + (1u << 20)) {
              pos = one->first;
            } else {
              unusable = true;
            }
          }
        } else {
          unusable = true;  // a whole blob (200): never read it
        }
        if (unusable) return fail_errno(what + ": not the ranges asked for", ECANCELED);
      }
      if (reader) {
        auto fed = reader->feed(data);
        if (!fed && !sink_error) malformed = true;
        return fed;
      }
      const std::uint64_t from = pos;
      pos += data.size();
      for (; next < by_offset.size(); ++next) {
        const std::size_t i = by_offset[next];
        if (ranges[i].offset >= pos) break;
        const std::uint64_t x = std::max(ranges[i].offset, from),
                            y = std::min(ranges[i].offset + ranges[i].length, pos);
        if (x < y) CFS_TRY(give(i, data.subspan(x - from, y - x)));
        if (ranges[i].offset + ranges[i].length > pos) break;
      }
      if (next == by_offset.size()) {
        enough = true;  // the rest of the coalesced range is not needed
        return fail_errno(what + ": ranges complete", ECANCELED);
      }
      return {};
    };
    auto resp = send(*st, a, req);
    if (sink_error) return fail(std::move(*sink_error));
    // A malformed answer is an error (EPROTO naming the blob and what was wrong), and this
    // registry is not asked for several ranges again: the objects' opens fetch them one each.
    if (malformed) {
      st->no_multirange = true;
      if (!resp) return fail(resp.error());
      return fail_errno(what + ": a malformed multipart/byteranges response", EPROTO);
    }
    if (unusable) {
      st->no_multirange = true;
    } else if (enough) {
      // Every range came.
    } else if (!resp) {
      if (!is_transient(resp.error())) return fail(resp.error());
    } else if (resp->status == 206) {
      if (auto fin = reader ? reader->finish() : Status{}; !fin) {
        st->no_multirange = true;
        return fail(fin.error());
      }
    } else if (!retryable_status(resp->status)) {
      return fail(denied(http_error(req, *resp), a));
    }
  }
  // What one request did not bring: each range (or its rest) alone, with fetch_range's retries.
  for (std::size_t i = 0; i < ranges.size(); ++i)
    if (got[i] < ranges[i].length)
      CFS_TRY(fetch_range(ref, d, ranges[i].offset + got[i], ranges[i].length - got[i],
                          *ranges[i].sink));
  return {};
}

Result<std::vector<std::string>> Client::Impl::list_tags(const Reference& ref) {
  CFS_ASSIGN(auto* st, state(ref));
  Access a = pull_access(ref);
  std::vector<std::string> tags;
  std::string next = url(*st, ref, "tags/list");
  while (!next.empty()) {
    HttpRequest req;
    req.url = next;
    req.follow_redirects = true;
    CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {200}));
    auto j = nlohmann::json::parse(resp.body, nullptr, false);
    if (!j.is_object())
      return fail(Errc::kInvalidInput, "tags of " + ref.str() + ": not a JSON object");
    if (j.contains("tags") && j["tags"].is_array())
      for (const auto& t : j["tags"])
        if (t.is_string()) tags.push_back(t.get<std::string>());
    // Pagination: Link: </v2/NAME/tags/list?n=..&last=..>; rel="next"
    next.clear();
    if (auto link = resp.headers.get("link");
        link && link->find("rel=\"next\"") != std::string::npos) {
      auto lt = link->find('<');
      auto gt = link->find('>');
      if (lt != std::string::npos && gt != std::string::npos && gt > lt) {
        std::string target = link->substr(lt + 1, gt - lt - 1);
        next = target.starts_with("/") ? st->base() + target : target;
      }
    }
  }
  return tags;
}

Result<Referrers> Client::Impl::list_referrers(const Reference& ref,
                                               const oci::ContentDigest& subject,
                                               std::string_view artifact_type,
                                               ReferrersOrder order) {
  Referrers out;
  // The distribution-spec 1.1 fallback tag's index; nullopt when there is no such tag.
  auto tagged = [&]() -> Result<std::optional<std::string>> {
    auto m = get_manifest(ref.with_tag(referrers_tag(subject)));
    if (!m) {
      if (m.error().is(Errc::kObjectMissing)) return std::optional<std::string>();
      return fail(std::move(m).error());
    }
    return std::optional<std::string>(std::move(m->bytes));
  };
  std::optional<std::string> index;
  if (order == ReferrersOrder::kTagThenApi) {
    CFS_ASSIGN(index, tagged());
  }
  if (!index) {
    CFS_ASSIGN(auto* st, state(ref));
    Access a = pull_access(ref);
    HttpRequest req;
    req.url = url(*st, ref, "referrers/" + subject.str());
    if (!artifact_type.empty()) req.url += "?artifactType=" + detail::Http::escape(artifact_type);
    req.headers.push_back("Accept: " + std::string(kOciIndex));
    req.max_body = kMaxManifestSize;
    req.follow_redirects = true;
    CFS_ASSIGN(auto resp, call(*st, a, req));
    if (resp.status == 200 && media_type_of(resp) == kOciIndex) {
      out.from_api = true;
      index = std::move(resp.body);
    } else if (resp.status == 200 || resp.status == 404 || resp.status == 400 ||
               resp.status == 405) {
      // No referrers API (distribution 2.8 answers 404): the fallback tag, unless it was asked.
      out.no_api = true;
      if (order != ReferrersOrder::kApiThenTag) return out;
      CFS_ASSIGN(index, tagged());
      if (!index) return out;
    } else {
      return fail(denied(http_error(req, resp), a));
    }
  }
  CFS_ASSIGN(auto all,
             detail::manifest_children(*index, kOciIndex, "referrers of " + subject.str()));
  for (auto& d : all)
    if (artifact_type.empty() || d.artifact_type == artifact_type)
      out.manifests.push_back(std::move(d));
  return out;
}

Status Client::Impl::check_login(const std::string& registry) {
  Reference ref;
  ref.registry = registry;
  CFS_ASSIGN(auto* st, state(ref));
  Access a{registry, "", {}};
  HttpRequest req;
  req.url = st->base() + "/v2/";
  // An unauthenticated 200 from the ping means the registry needs no login; we still check
  // that a Bearer realm accepts the credentials, as podman login does.
  CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {200}));
  (void)resp;
  return {};
}

// ---- public wrappers -------------------------------------------------------------------------

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Result<Client> Client::create(ClientOptions options) {
  if (options.retry.initial_delay_s < 0 || options.retry.max_delay_s < 0)
    return fail(Errc::kInvalidInput, "retry delays must not be negative");
  if (options.chunk_size == 0) return fail(Errc::kInvalidInput, "chunk size must not be 0");
  return Client(std::make_unique<Impl>(std::move(options)));
}

Result<Manifest> Client::get_manifest(const Reference& ref) {
  ProgressTracker tr(impl_->opts.progress, impl_->cb_mu);
  auto m = impl_->get_manifest(ref);
  if (m) {
    tr.start(m->digest.str(), TransferEvent::Direction::kDownload, m->bytes.size(), 0);
    tr.progress(m->digest.str(), m->bytes.size());
    tr.finish(m->digest.str(), TransferEvent::Kind::kDone);
  }
  return m;
}

Result<ContentInfo> Client::stat_manifest(const Reference& ref) {
  return impl_->stat_manifest(ref);
}

Result<std::optional<ContentInfo>> Client::stat_blob(const Reference& repo,
                                                     const oci::ContentDigest& d) {
  return impl_->stat_blob(repo, d, Impl::pull_access(repo));
}

Status Client::fetch_blob(const Reference& repo, const BlobFetch& fetch,
                          const FetchOptions& options) {
  ProgressTracker tr(impl_->opts.progress, impl_->cb_mu);
  tr.expect(fetch.digest.str(), fetch.size);
  return impl_->fetch_one(repo, fetch, options, tr, *impl_->opts.cancel);
}

Status Client::fetch_blobs(const Reference& repo, const std::vector<BlobFetch>& fetches,
                           const FetchOptions& options) {
  return impl_->fetch_blobs(repo, fetches, options);
}

Status Client::fetch_ranges(const Reference& repo, const oci::ContentDigest& d,
                            std::span<const BlobRange> ranges) {
  return impl_->fetch_ranges(repo, d, ranges);
}

Status Client::fetch_range(const Reference& repo, const oci::ContentDigest& d, std::uint64_t offset,
                           std::uint64_t length, BlobSink& sink) {
  return impl_->fetch_range(repo, d, offset, length, sink);
}

Result<PushOutcome> Client::push_blob(const Reference& repo, const oci::ContentDigest& d,
                                      BlobSource& src, const PushOptions& options) {
  return impl_->push_blob(repo, d, src, options);
}

Result<oci::ContentDigest> Client::put_manifest(const Reference& ref, std::string_view media_type,
                                                std::string_view bytes) {
  return impl_->put_manifest(ref, media_type, bytes);
}

Result<std::vector<std::string>> Client::list_tags(const Reference& repo) {
  return impl_->list_tags(repo);
}

Result<Referrers> Client::list_referrers(const Reference& repo, const oci::ContentDigest& subject,
                                         std::string_view artifact_type, ReferrersOrder order) {
  return impl_->list_referrers(repo, subject, artifact_type, order);
}

Status Client::check_login(const std::string& registry) { return impl_->check_login(registry); }

void Client::cancel() { impl_->opts.cancel->cancel(); }

void Client::give_up_at(std::optional<std::chrono::steady_clock::time_point> at) {
  impl_->http.give_up_at(at);
}

}  // namespace cfs::registry
