// SPDX-License-Identifier: Apache-2.0
#include "tools/registry_options.h"

#include <fmt/core.h>

#include <cstdio>

#include "tools/command.h"

namespace cfs::tools {

void RegistryOptions::add(CLI::App& app, bool with_json, bool with_jobs) {
  app.add_option("--creds", creds, "USERNAME:PASSWORD for the registry");
  app.add_option("--authfile", authfile,
                 "auth.json to read credentials from (default: $REGISTRY_AUTH_FILE, then "
                 "the containers and docker files)");
  app.add_option("--tls-verify", tls_verify,
                 "verify TLS certificates; false also allows plain http (default true)")
      ->expected(0, 1)
      ->default_str("true");
  app.add_option("--cert-dir", cert_dir, "directory of *.crt CAs and *.cert/*.key client certs");
  app.add_option("--retry-times", retry_times, "retries after failures (default 5)");
  app.add_option("--retry-delay", retry_delay,
                 "seconds before the first retry, doubling each time (default 1)");
  if (with_jobs)
    app.add_option("--jobs", jobs, "blobs transferred at once (default 4)")
        ->check(CLI::PositiveNumber);
  if (with_json)
    app.add_flag("--json", json, "progress events and the result as JSON lines on stdout");
}

Result<registry::ClientOptions> RegistryOptions::options() const {
  registry::ClientOptions o;
  if (tls_verify == "false" || tls_verify == "0")
    o.tls.verify = false;
  else if (!(tls_verify.empty() || tls_verify == "true" || tls_verify == "1"))
    return fail(Errc::kInvalidInput, "--tls-verify takes true or false");
  if (!cert_dir.empty()) o.tls.cert_dir = cert_dir;
  if (!creds.empty()) {
    CFS_ASSIGN(auto c, registry::parse_credentials(creds));
    o.creds = c;
  }
  if (!authfile.empty()) o.auth_file = authfile;
  o.retry.max_retries = retry_times;
  o.retry.initial_delay_s = retry_delay;
  o.parallel = jobs;
  o.user_agent = "cfs/" CFS_VERSION;
  return o;
}

registry::ProgressCallback transfer_callback(Progress& progress, bool messages_only) {
  if (progress.mode() == Progress::Mode::kNone) return {};
  return [&progress, messages_only](const registry::TransferEvent& t) {
    using K = registry::TransferEvent::Kind;
    if (messages_only && t.kind != K::kRetry && t.kind != K::kFailed) return;
    BlobEvent ev;
    // The two enums list the same kinds in the same order.
    static_assert(static_cast<int>(K::kFailed) == static_cast<int>(BlobEvent::Kind::kFailed));
    ev.kind = static_cast<BlobEvent::Kind>(static_cast<int>(t.kind));
    ev.direction = t.direction == registry::TransferEvent::Direction::kUpload
                       ? BlobEvent::Direction::kUpload
                       : BlobEvent::Direction::kDownload;
    ev.digest = t.digest;
    ev.bytes = t.bytes;
    ev.size = t.size;
    ev.resumed_from = t.resumed_from;
    ev.retry_delay_s = t.retry_delay_s;
    ev.message = t.message;
    progress.on(ev);
  };
}

Result<registry::Client> make_client(const RegistryOptions& o, Progress& progress,
                                     bool messages_only,
                                     std::shared_ptr<registry::CancelToken> cancel) {
  CFS_ASSIGN(auto opts, o.options());
  opts.progress = transfer_callback(progress, messages_only);
  opts.cancel = std::move(cancel);
  return registry::Client::create(std::move(opts));
}

std::shared_ptr<registry::CancelToken> stop_on_signals(std::optional<Interrupts>& interrupts) {
  auto cancel = std::make_shared<registry::CancelToken>();
  interrupts.emplace([cancel] { cancel->cancel(); });
  return cancel;
}

}  // namespace cfs::tools
