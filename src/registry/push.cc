// SPDX-License-Identifier: Apache-2.0
// Uploads: blobs (HEAD, cross-repository mount, monolithic POST + PUT, chunked PATCH) and
// manifests (PUT, plus the referrers fallback index for manifests with a subject).
#include <nlohmann/json.hpp>

#include "registry/client_impl.h"
#include "registry/descriptors.h"

namespace cfs::registry {

using detail::Backoff;
using detail::HttpRequest;
using detail::HttpResponse;
using detail::is_transient;
using detail::retryable_status;

namespace {

// Distribution 2.8 rejects blob bodies sent with curl's default form content type
// (400 DIGEST_INVALID), so every upload request says what it is.
constexpr const char* kOctetStream = "Content-Type: application/octet-stream";

std::string with_query(const std::string& url, const std::string& param) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + param;
}

// Range: 0-N (no "bytes=" prefix, as the distribution spec has it) -> N + 1 bytes received.
std::optional<std::uint64_t> received_from_range(const std::optional<std::string>& h) {
  if (!h) return std::nullopt;
  std::string_view s = *h;
  if (s.starts_with("bytes=")) s.remove_prefix(6);
  auto dash = s.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::uint64_t end = 0;
  for (char c : s.substr(dash + 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    end = end * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return end + 1;
}

}  // namespace

Access Client::Impl::push_access(const Reference& ref, const std::vector<std::string>& mount_from) {
  Access a{ref.registry, ref.repository, {"repository:" + ref.repository + ":pull,push"}};
  for (const auto& from : mount_from) a.scopes.push_back("repository:" + from + ":pull");
  return a;
}

std::string Client::Impl::resolve(const RegistryState& st, const std::string& location) const {
  if (location.starts_with("http://") || location.starts_with("https://")) return location;
  if (location.starts_with("/")) return st.base() + location;
  return st.base() + "/" + location;
}

Result<PushOutcome> Client::Impl::push_blob(const Reference& ref, const oci::ContentDigest& d,
                                            BlobSource& src, const PushOptions& po) {
  CFS_ASSIGN(auto* st, state(ref));
  Access a = push_access(ref, po.mount_from);
  ProgressTracker tr(opts.progress, cb_mu);
  const std::string id = d.str();
  const std::uint64_t size = src.size();
  tr.expect(id, size);
  auto failed = [&](Error e) {
    tr.finish(id, TransferEvent::Kind::kFailed, e.message());
    return fail(std::move(e));
  };

  CFS_ASSIGN(auto existing, stat_blob(ref, d, a));
  if (existing) {
    tr.finish(id, TransferEvent::Kind::kSkipped, "already in " + ref.repository);
    return PushOutcome::kExisted;
  }
  const std::string uploads = url(*st, ref, "blobs/uploads/");
  std::optional<std::string> location;
  for (const auto& from : po.mount_from) {
    HttpRequest req;
    req.method = "POST";
    req.url = with_query(
        uploads, "mount=" + detail::Http::escape(id) + "&from=" + detail::Http::escape(from));
    req.headers.push_back(kOctetStream);
    auto resp = expect(call(*st, a, req), req, a, {201, 202});
    if (!resp) return failed(resp.error());
    if (resp->status == 201) {
      tr.finish(id, TransferEvent::Kind::kSkipped, "mounted from " + from);
      return PushOutcome::kMounted;
    }
    // 202: the registry could not mount and opened an upload session instead. Use it.
    if (auto loc = resp->headers.get("location")) {
      location = resolve(*st, *loc);
      break;
    }
  }
  auto start_upload = [&]() -> Result<std::string> {
    HttpRequest req;
    req.method = "POST";
    req.url = uploads;
    req.headers.push_back(kOctetStream);
    CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {202}));
    auto loc = resp.headers.get("location");
    if (!loc) return fail_errno("POST " + uploads + ": upload session without a Location", EPROTO);
    return resolve(*st, *loc);
  };
  auto check_digest = [&](const HttpResponse& resp) -> Status {
    auto h = resp.headers.get("docker-content-digest");
    if (h && *h != id)
      return fail(Errc::kDigestMismatch, "registry stored blob " + id + " under the digest " + *h);
    return {};
  };

  tr.start(id, TransferEvent::Direction::kUpload, size, 0);
  Backoff backoff(opts.retry, http.give_up());
  auto retry = [&](const std::string& why, double retry_after) -> Status {
    auto delay = backoff.next(retry_after);
    if (!delay)
      return fail(detail::gave_up(Error(std::error_code(ECONNRESET, std::generic_category()),
                                        "upload of " + id + ": " + why),
                                  backoff.retries()));
    tr.retry(id, *delay, why);
    detail::pause(*opts.cancel, *delay);
    return {};
  };

  if (opts.chunked_threshold == 0 || size <= opts.chunked_threshold) {
    // Monolithic: the whole blob in one PUT to the session. A failed PUT leaves the session in
    // an unknown state, so each retry opens a new one.
    while (true) {
      if (!location) {
        auto loc = start_upload();
        if (!loc) return failed(loc.error());
        location = *loc;
      }
      HttpRequest req;
      req.method = "PUT";
      req.url = with_query(*location, "digest=" + detail::Http::escape(id));
      req.headers.push_back(kOctetStream);
      req.source = &src;
      req.source_length = size;
      req.on_upload = [&](std::uint64_t sent) { tr.progress(id, sent); };
      auto resp = send(*st, a, req);
      location.reset();
      std::string why;
      double retry_after = -1;
      if (!resp) {
        if (!is_transient(resp.error())) return failed(resp.error());
        why = resp.error().message();
      } else if (resp->status == 201) {
        if (auto st2 = check_digest(*resp); !st2) return failed(st2.error());
        break;
      } else if (retryable_status(resp->status)) {
        why = "HTTP " + std::to_string(resp->status);
        retry_after = resp->retry_after_s;
      } else {
        return failed(denied(detail::http_error(req, *resp), a));
      }
      if (auto r = retry(why, retry_after); !r) return failed(r.error());
    }
  } else {
    // Chunked: PATCH pieces with Content-Range; after a failure ask the session how much it
    // has (GET -> 204 Range: 0-N) and continue from there.
    std::uint64_t offset = 0;
    bool finished = false;
    while (!finished) {
      if (!location) {
        auto loc = start_upload();
        if (!loc) return failed(loc.error());
        location = *loc;
        offset = 0;
      }
      HttpRequest req;
      std::uint64_t n = std::min(opts.chunk_size, size - offset);
      if (offset < size) {
        req.method = "PATCH";
        req.url = *location;
        req.headers = {kOctetStream, "Content-Range: " + std::to_string(offset) + "-" +
                                         std::to_string(offset + n - 1)};
        req.source = &src;
        req.source_offset = offset;
        req.source_length = n;
        req.on_upload = [&, base = offset](std::uint64_t sent) { tr.progress(id, base + sent); };
      } else {
        req.method = "PUT";
        req.url = with_query(*location, "digest=" + detail::Http::escape(id));
        req.headers = {kOctetStream};
      }
      auto resp = send(*st, a, req);
      std::string why;
      double retry_after = -1;
      if (resp && req.method == "PATCH" && resp->status == 202) {
        auto loc = resp->headers.get("location");
        if (loc) location = resolve(*st, *loc);
        offset = received_from_range(resp->headers.get("range")).value_or(offset + n);
        tr.progress(id, offset);
        continue;
      }
      if (resp && req.method == "PUT" && resp->status == 201) {
        if (auto st2 = check_digest(*resp); !st2) return failed(st2.error());
        finished = true;
        continue;
      }
      if (!resp) {
        if (!is_transient(resp.error())) return failed(resp.error());
        why = resp.error().message();
      } else if (retryable_status(resp->status)) {
        why = "HTTP " + std::to_string(resp->status);
        retry_after = resp->retry_after_s;
      } else if (resp->status == 404 || resp->status == 416) {
        why = "upload session lost (HTTP " + std::to_string(resp->status) + ")";
        location.reset();
      } else {
        return failed(denied(detail::http_error(req, *resp), a));
      }
      if (auto r = retry(why, retry_after); !r) return failed(r.error());
      if (location) {
        HttpRequest q;
        q.url = *location;
        auto status = send(*st, a, q);
        auto received = status && status->status == 204
                            ? received_from_range(status->headers.get("range"))
                            : std::nullopt;
        // distribution writes an empty upload as "Range: 0-0", the same as one byte: with
        // nothing confirmed before, "0-0" means nothing arrived.
        if (received == 1 && offset == 0) received = 0;
        if (received && *received >= offset && *received <= offset + n) {
          offset = *received;
          if (auto loc = status->headers.get("location")) location = resolve(*st, *loc);
        } else {
          location.reset();  // the session is gone (or makes no sense): start over
        }
      }
    }
  }
  tr.progress(id, size);
  tr.finish(id, TransferEvent::Kind::kDone);
  return PushOutcome::kUploaded;
}

Result<oci::ContentDigest> Client::Impl::put_manifest(const Reference& ref,
                                                      std::string_view media_type,
                                                      std::string_view bytes) {
  CFS_ASSIGN(auto* st, state(ref));
  Access a = push_access(ref, {});
  oci::ContentDigest digest = detail::digest_bytes(bytes, "sha256");
  if (!ref.digest.empty()) {
    CFS_ASSIGN(auto want, oci::ContentDigest::parse(ref.digest));
    digest = detail::digest_bytes(bytes, want.algorithm);
    if (digest != want)
      return fail(Errc::kDigestMismatch,
                  "manifest for " + ref.str() + " has digest " + digest.str());
  }
  if (media_type.empty())
    return fail(Errc::kInvalidInput, "manifest for " + ref.str() + ": no media type");
  HttpRequest req;
  req.method = "PUT";
  req.url = url(*st, ref, "manifests/" + ref.manifest_reference());
  req.headers.push_back("Content-Type: " + std::string(media_type));
  req.body = bytes;
  CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {201}));
  if (auto h = resp.headers.get("docker-content-digest"); h && *h != digest.str())
    return fail(Errc::kDigestMismatch, "registry stored the manifest for " + ref.str() + " under " +
                                           *h + ", its bytes have " + digest.str());
  CFS_ASSIGN(auto referrer, detail::referrer_of(bytes, media_type, digest));
  // A registry with the referrers API says so with OCI-Subject; otherwise the client keeps the
  // fallback index (distribution-spec 1.1, "Pushing Manifests with Subject").
  if (referrer && !resp.headers.get("oci-subject"))
    CFS_TRY(add_to_fallback_index(ref, referrer->first, referrer->second));
  return digest;
}

// Read-modify-write of the sha256-<hex> tag. Two writers racing can lose an entry: the spec
// suggests conditional requests, which distribution 2.8 does not implement.
Status Client::Impl::add_to_fallback_index(const Reference& ref, const oci::ContentDigest& subject,
                                           const Descriptor& d) {
  Reference tag = ref.with_tag(referrers_tag(subject));
  std::string existing;
  auto m = get_manifest(tag);
  if (m) {
    existing = std::move(m->bytes);
  } else if (!m.error().is(Errc::kObjectMissing)) {
    return fail(std::move(m).error());
  }
  CFS_ASSIGN(auto updated, detail::add_to_index(existing, d));
  if (!updated) return {};
  CFS_ASSIGN(auto* st, state(ref));
  Access a = push_access(ref, {});
  HttpRequest req;
  req.method = "PUT";
  req.url = url(*st, tag, "manifests/" + tag.tag);
  req.headers.push_back("Content-Type: " + std::string(kOciIndex));
  req.body = *updated;
  CFS_ASSIGN(auto resp, expect(call(*st, a, req), req, a, {201}));
  (void)resp;
  return {};
}

}  // namespace cfs::registry
