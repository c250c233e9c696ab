// SPDX-License-Identifier: Apache-2.0
#include "registry/http.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

namespace cfs::registry::detail {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// The state of one perform(): what the callbacks fill in.
struct Exchange {
  CURL* handle = nullptr;
  const HttpRequest* req = nullptr;
  HttpResponse resp;
  std::optional<Error> sink_error;
  bool body_too_large = false;
  bool status_known = false;
  bool cut_at_headers = false;  // a 416 answered: its body was not read
  std::uint64_t read_pos = 0;   // request body bytes handed to curl
  const CancelToken* client_cancel = nullptr;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  std::string_view line(data, size * n);
  if (line == "\r\n" || line == "\n") {
    // distribution 2.8 answers an unsatisfiable Range with the blob's Content-Length and a
    // 33-byte body, so reading that body would wait for bytes that never come. Nothing in a
    // 416 body is needed: stop at its headers.
    long status = 0;
    curl_easy_getinfo(ex->handle, CURLINFO_RESPONSE_CODE, &status);
    if (status == 416) {
      ex->cut_at_headers = true;
      return 0;
    }
    return size * n;
  }
  if (line.starts_with("HTTP/")) {
    // A new response (after a redirect or a 100 Continue): forget the previous headers.
    ex->resp.headers.list.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string_view::npos)
    ex->resp.headers.list.emplace_back(ascii_lower(trim(line.substr(0, colon))),
                                       std::string(trim(line.substr(colon + 1))));
  return size * n;
}

size_t on_write(char* data, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  size_t len = size * n;
  if (!ex->status_known) {
    curl_easy_getinfo(ex->handle, CURLINFO_RESPONSE_CODE, &ex->resp.status);
    ex->status_known = true;
  }
  if (ex->req->on_data && ex->resp.status >= 200 && ex->resp.status < 300) {
    auto st = ex->req->on_data(ex->resp, std::as_bytes(std::span(data, len)));
    if (!st) {
      ex->sink_error = std::move(st).error();
      return 0;  // aborts the transfer with CURLE_WRITE_ERROR
    }
    return len;
  }
  if (ex->resp.body.size() + len > ex->req->max_body) {
    ex->body_too_large = true;
    return 0;
  }
  ex->resp.body.append(data, len);
  return len;
}

size_t on_read(char* buf, size_t size, size_t n, void* user) {
  auto* ex = static_cast<Exchange*>(user);
  const HttpRequest& req = *ex->req;
  size_t want = size * n;
  if (req.source) {
    std::uint64_t left = req.source_length - ex->read_pos;
    want = static_cast<size_t>(std::min<std::uint64_t>(want, left));
    if (want == 0) return 0;
    auto got = req.source->read_at(req.source_offset + ex->read_pos,
                                   std::as_writable_bytes(std::span(buf, want)));
    if (!got || *got == 0) {
      ex->sink_error =
          got ? Error(Errc::kInvalidInput, "upload source ended early") : std::move(got).error();
      return CURL_READFUNC_ABORT;
    }
    ex->read_pos += *got;
    return *got;
  }
  std::uint64_t left = req.body.size() - ex->read_pos;
  want = static_cast<size_t>(std::min<std::uint64_t>(want, left));
  std::memcpy(buf, req.body.data() + ex->read_pos, want);
  ex->read_pos += want;
  return want;
}

// Rewinding lets curl resend a body after a redirect or an auth round trip.
int on_seek(void* user, curl_off_t offset, int origin) {
  auto* ex = static_cast<Exchange*>(user);
  if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
  ex->read_pos = static_cast<std::uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

// Returning non-zero aborts the transfer (CURLE_ABORTED_BY_CALLBACK). The token's wakeup
// (perform_cancellable) usually ends the transfer first; this covers the time curl spends
// inside curl_multi_perform (e.g. an upload's read callback).
int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t ulnow) {
  auto* ex = static_cast<Exchange*>(user);
  if (ex->client_cancel && ex->client_cancel->cancelled()) return 1;
  if (ex->req->on_upload && ulnow > 0) ex->req->on_upload(static_cast<std::uint64_t>(ulnow));
  return 0;
}

int errno_for(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
      return ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
      return ETIMEDOUT;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return ECONNRESET;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return EHOSTUNREACH;
    case CURLE_ABORTED_BY_CALLBACK:
      return ECANCELED;
    case CURLE_OUT_OF_MEMORY:
      return ENOMEM;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_TOO_MANY_REDIRECTS:
    case CURLE_BAD_CONTENT_ENCODING:
      return EPROTO;
    default:
      return EIO;
  }
}

// curl_easy_perform's own loop (a multi handle of one transfer), with a wakeup: the client's
// cancel() interrupts the wait on the sockets at once, where the progress callback would only
// see it at its next call (up to a second while nothing arrives, e.g. a registry that hangs).
CURLcode perform_cancellable(CURL* h, CURLM* m, const CancelToken* cancel) {
  if (curl_multi_add_handle(m, h) != CURLM_OK) return CURLE_FAILED_INIT;
  std::uint64_t sub = cancel ? cancel->subscribe([m] { curl_multi_wakeup(m); }) : 0;
  CURLcode rc = CURLE_OK;
  for (;;) {
    int running = 0;
    if (curl_multi_perform(m, &running) != CURLM_OK) {
      rc = CURLE_FAILED_INIT;
      break;
    }
    if (running == 0) {
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(m, &left))
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == h) rc = msg->data.result;
      break;
    }
    // A cancel() after this check is not lost: its wakeup makes the poll return at once.
    if (cancel && cancel->cancelled()) {
      rc = CURLE_ABORTED_BY_CALLBACK;
      break;
    }
    if (curl_multi_poll(m, nullptr, 0, 1000, nullptr) != CURLM_OK) {
      rc = CURLE_FAILED_INIT;
      break;
    }
  }
  if (cancel) cancel->unsubscribe(sub);
  curl_multi_remove_handle(m, h);  // mid-transfer (cancelled): its connection is closed
  return rc;
}

struct SList {
  curl_slist* list = nullptr;
  ~SList() { curl_slist_free_all(list); }
  void add(const std::string& s) { list = curl_slist_append(list, s.c_str()); }
};

}  // namespace

std::optional<std::string> HttpHeaders::get(std::string_view name) const {
  std::string want = ascii_lower(name);
  for (auto it = list.rbegin(); it != list.rend(); ++it)
    if (it->first == want) return it->second;
  return std::nullopt;
}

std::vector<std::string> HttpHeaders::all(std::string_view name) const {
  std::string want = ascii_lower(name);
  std::vector<std::string> out;
  for (const auto& [k, v] : list)
    if (k == want) out.push_back(v);
  return out;
}

bool is_transient(const Error& e) {
  return e.is_errno(ECONNREFUSED) || e.is_errno(ETIMEDOUT) || e.is_errno(ECONNRESET);
}

// Handles are kept between requests (curl_easy_reset keeps their caches); the share object
// lets every handle reuse the others' connections and TLS sessions.
struct Http::Shared {
  struct Handles {
    CURL* easy;
    CURLM* multi;  // runs only `easy` (perform_cancellable)
  };
  std::mutex pool_mu;
  std::vector<Handles> idle;
  CURLSH* share = nullptr;
  // The CA stores of verified connections, one per set of extra CA files: curl would load its
  // CA bundle into every connection's TLS context (~150 certificates: 15-30 ms of CPU with
  // OpenSSL 3's PEM decoders, 28-75 ms at load 5), i.e. once per pooled handle and so again for
  // each transfer a lazy mount or a pull runs beside another. Built once, shared by reference.
  std::mutex ca_mu;
  std::optional<std::pair<std::string, std::string>> ca_defaults;  // curl's CAINFO, CAPATH
  std::map<std::vector<std::string>, X509_STORE*> ca_stores;
  std::mutex locks[CURL_LOCK_DATA_LAST];

  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* user) {
    static_cast<Shared*>(user)->locks[data].lock();
  }
  static void unlock(CURL*, curl_lock_data data, void* user) {
    static_cast<Shared*>(user)->locks[data].unlock();
  }

  Shared() {
    share = curl_share_init();
    if (!share) throw std::bad_alloc();
    curl_share_setopt(share, CURLSHOPT_LOCKFUNC, &Shared::lock);
    curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, &Shared::unlock);
    curl_share_setopt(share, CURLSHOPT_USERDATA, this);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);
  }
  ~Shared() {
    for (auto& [files, store] : ca_stores) X509_STORE_free(store);
    for (auto [h, m] : idle) {
      curl_multi_cleanup(m);
      curl_easy_cleanup(h);
    }
    curl_share_cleanup(share);
  }
  Handles acquire() {
    {
      std::lock_guard g(pool_mu);
      if (!idle.empty()) {
        Handles h = idle.back();
        idle.pop_back();
        curl_easy_reset(h.easy);
        return h;
      }
    }
    CURL* h = curl_easy_init();
    CURLM* m = curl_multi_init();
    if (!h || !m) {
      if (h) curl_easy_cleanup(h);
      if (m) curl_multi_cleanup(m);
      throw std::bad_alloc();
    }
    return {h, m};
  }
  void release(Handles h) {
    std::lock_guard g(pool_mu);
    idle.push_back(h);
  }

  // curl's built-in CA bundle and directory (what it would load), asked once.
  void learn_ca_defaults(CURL* h) {
    std::lock_guard g(ca_mu);
    if (ca_defaults) return;
    char* file = nullptr;
    char* dir = nullptr;
    curl_easy_getinfo(h, CURLINFO_CAINFO, &file);
    curl_easy_getinfo(h, CURLINFO_CAPATH, &dir);
    ca_defaults.emplace(file ? file : "", dir ? dir : "");
  }

  // The store for these extra CA files: curl's defaults plus them, as curl set it up (trusted
  // certificates first, partial chains accepted). Null when a file cannot be read or holds no
  // certificate (nothing is cached then: the next connection tries again).
  X509_STORE* ca_store(const std::vector<std::string>& files) {
    std::lock_guard g(ca_mu);
    if (auto it = ca_stores.find(files); it != ca_stores.end()) return it->second;
    X509_STORE* store = X509_STORE_new();
    if (!store) return nullptr;
    X509_STORE_set_flags(store, X509_V_FLAG_TRUSTED_FIRST | X509_V_FLAG_PARTIAL_CHAIN);
    bool ok = true;
    if (ca_defaults && !ca_defaults->first.empty())
      ok = X509_STORE_load_file(store, ca_defaults->first.c_str()) == 1;
    if (ok && ca_defaults && !ca_defaults->second.empty())
      ok = X509_STORE_load_path(store, ca_defaults->second.c_str()) == 1;
    for (const auto& file : files) {
      if (!ok) break;
      BIO* bio = BIO_new_file(file.c_str(), "r");
      if (!bio) {
        ok = false;
        break;
      }
      int added = 0;
      while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
        X509_STORE_add_cert(store, cert);  // a duplicate is not an error worth failing for
        X509_free(cert);
        ++added;
      }
      BIO_free(bio);
      ok = added > 0;
    }
    ERR_clear_error();  // PEM reading ends on an expected "no start line"
    if (!ok) {
      X509_STORE_free(store);
      return nullptr;
    }
    ca_stores.emplace(files, store);
    return store;
  }
};

namespace {

struct CaRequest {
  Http::Shared* shared;
  const std::vector<std::string>* files;
};

// A verified connection's TLS context gets the shared store (system CAs and the certificate
// directory's, containers-certs.d(5): added to the system ones, not replacing them). curl then
// sets its verification flags on it again (the same ones, see ca_store) and keeps it in its
// own per-multi cache, which without a CA path it now uses too.
CURLcode on_ssl_ctx(CURL*, void* ssl_ctx, void* user) {
  auto* r = static_cast<CaRequest*>(user);
  X509_STORE* store = r->shared->ca_store(*r->files);
  if (!store) return CURLE_SSL_CACERT_BADFILE;
  SSL_CTX_set1_cert_store(static_cast<SSL_CTX*>(ssl_ctx), store);
  return CURLE_OK;
}

}  // namespace

Http::Http(const ClientOptions& options) : options_(options) {
  global_init();
  shared_ = std::make_unique<Shared>();
}

Http::~Http() = default;

std::string Http::escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

void Http::give_up_at(std::optional<Clock::time_point> at) {
  give_up_ns_.store(
      at ? std::chrono::duration_cast<std::chrono::nanoseconds>(at->time_since_epoch()).count() : 0,
      std::memory_order_relaxed);
}

std::optional<Http::Clock::time_point> Http::give_up() const {
  const std::int64_t ns = give_up_ns_.load(std::memory_order_relaxed);
  if (ns == 0) return std::nullopt;
  return Clock::time_point(
      std::chrono::duration_cast<Clock::duration>(std::chrono::nanoseconds(ns)));
}

Result<HttpResponse> Http::perform(const HttpRequest& req) {
  // The call's token is a child of the client's: cancelled whenever the client's is.
  const CancelToken* cancel = req.cancel ? req.cancel : options_.cancel.get();
  if (cancel && cancel->cancelled())
    return fail_errno(req.method + " " + req.url + ": cancelled", ECANCELED);
  const Shared::Handles handles = shared_->acquire();
  CURL* h = handles.easy;
  struct Release {
    Shared* s;
    Shared::Handles h;
    ~Release() { s->release(h); }
  } release{shared_.get(), handles};

  Exchange ex;
  ex.handle = h;
  ex.req = &req;
  ex.client_cancel = cancel;
  char errbuf[CURL_ERROR_SIZE] = {};
  SList headers;
  for (const auto& hd : req.headers) headers.add(hd);

  curl_easy_setopt(h, CURLOPT_SHARE, shared_->share);
  curl_easy_setopt(h, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_USERAGENT, options_.user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  // Following a redirect from https to http would drop the transport security the user asked
  // for; curl already drops Authorization headers when a redirect changes the host.
  curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, req.verify_tls ? "https" : "http,https");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, req.follow_redirects ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_MAXREDIRS, 10L);
  // A caller with a fallback (Client::give_up_at) waits for a connection only until its
  // give-up time; at least 100 ms (0 would be curl's default of 300 s).
  long connect_ms = options_.connect_timeout_s * 1000;
  if (const auto at = give_up())
    connect_ms = std::clamp<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(*at - Clock::now()).count(), 100,
        connect_ms);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_bytes);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, options_.low_speed_time_s);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, req.verify_tls ? 1L : 0L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, req.verify_tls ? 2L : 0L);
  // Without verification no CA is loaded at all (curl 7.88 loads none then either).
  static const std::vector<std::string> kNoFiles;
  CaRequest ca{shared_.get(), req.tls_files ? &req.tls_files->ca_files : &kNoFiles};
  if (req.verify_tls) {
    shared_->learn_ca_defaults(h);
    curl_easy_setopt(h, CURLOPT_CAINFO, nullptr);  // the shared store instead (on_ssl_ctx)
    curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
    curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, &on_ssl_ctx);
    curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, &ca);
  }
  if (req.tls_files) {
    if (!req.tls_files->client_cert.empty()) {
      curl_easy_setopt(h, CURLOPT_SSLCERT, req.tls_files->client_cert.c_str());
      curl_easy_setopt(h, CURLOPT_SSLKEY, req.tls_files->client_key.c_str());
    }
  }
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &ex);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_write);
  // Bodies arrive in pieces of up to this size (curl's default is 16 KiB): a 95 MB layer is
  // then 190 receives, partial-file writes and hand-overs to the importing thread instead of
  // 5.8k of each (bench/README.md, session 9). 512 KiB is the most every curl accepts.
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &ex);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &ex);

  bool has_body = req.source != nullptr || !req.body.empty();
  std::uint64_t body_len = req.source ? req.source_length : req.body.size();
  if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (req.method == "POST") {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body_len));
    if (has_body) {
      curl_easy_setopt(h, CURLOPT_READFUNCTION, &on_read);
      curl_easy_setopt(h, CURLOPT_READDATA, &ex);
    } else {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    }
  } else if (req.method == "PUT" || req.method == "PATCH") {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(body_len));
    curl_easy_setopt(h, CURLOPT_READFUNCTION, &on_read);
    curl_easy_setopt(h, CURLOPT_READDATA, &ex);
    if (req.method == "PATCH") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
  } else if (req.method != "GET") {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  if (has_body || req.method == "PUT" || req.method == "PATCH") {
    curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, &on_seek);
    curl_easy_setopt(h, CURLOPT_SEEKDATA, &ex);
  }
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.list);

  CURLcode rc = perform_cancellable(h, handles.multi, ex.client_cancel);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ex.resp.status);
  char* url = nullptr;
  if (curl_easy_getinfo(h, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url)
    ex.resp.effective_url = url;
  curl_off_t retry_after = 0;
  if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0)
    ex.resp.retry_after_s = static_cast<double>(retry_after);

  if (ex.sink_error) return fail(std::move(*ex.sink_error));
  std::string what = req.method + " " + req.url;
  if (ex.body_too_large)
    return fail(Errc::kInvalidInput,
                what + ": response larger than " + std::to_string(req.max_body) + " bytes");
  if (ex.cut_at_headers) return std::move(ex.resp);
  if (rc == CURLE_ABORTED_BY_CALLBACK && ex.client_cancel && ex.client_cancel->cancelled())
    return fail_errno(what + ": cancelled", ECANCELED);
  if (rc != CURLE_OK) {
    std::string detail = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    while (!detail.empty() && detail.back() == '\n') detail.pop_back();
    // OpenSSL's words for a server that answered the TLS handshake in plain HTTP: the usual
    // loopback or test registry, which skopeo's option reaches.
    if (rc == CURLE_SSL_CONNECT_ERROR && req.verify_tls &&
        detail.find("wrong version number") != std::string::npos)
      detail += " (a plain-HTTP registry? --tls-verify=false tries http too)";
    return fail(
        Error(std::error_code(errno_for(rc), std::generic_category()), what + ": " + detail));
  }
  return std::move(ex.resp);
}

}  // namespace cfs::registry::detail
