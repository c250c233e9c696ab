// SPDX-License-Identifier: Apache-2.0
// `cfs login` / `cfs logout`: credentials in the containers auth.json, as podman login and
// skopeo login keep them (so each tool reads what the other wrote). login checks the
// credentials against the registry before storing them.
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <CLI/CLI.hpp>
#pragma GCC diagnostic pop
#include <fmt/core.h>

#include "cfs/registry/auth.h"
#include "cfs/registry/client.h"
#include "tools/command.h"
#include "tools/interrupt.h"
#include "tools/registry_options.h"

namespace cfs::tools {
namespace {

// One line from the terminal (or stdin), without echo for passwords.
std::string prompt(const char* text, bool secret) {
  fmt::print(stderr, "{}", text);
  std::fflush(stderr);
  termios old{};
  bool tty = ::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (secret && tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (secret && tty) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fmt::print(stderr, "\n");
  }
  return line;
}

int run_login(int argc, char** argv) {
  CLI::App app{"Log in to a registry: check the credentials and store them in auth.json.",
               "cfs login"};
  std::string registry_arg, username, password, authfile, cert_dir, tls_verify = "true";
  bool password_stdin = false, get_login = false;
  app.add_option("REGISTRY", registry_arg, "HOST[:PORT] (optionally /NAMESPACE...)")->required();
  app.add_option("-u,--username", username, "user name (prompted for when missing)");
  app.add_option("-p,--password", password, "password (prompted for when missing)");
  app.add_flag("--password-stdin", password_stdin, "read the password from standard input");
  app.add_option("--authfile", authfile,
                 "auth file to write (default: $REGISTRY_AUTH_FILE, else "
                 "$XDG_RUNTIME_DIR/containers/auth.json)");
  app.add_option("--tls-verify", tls_verify,
                 "verify TLS certificates; false also allows plain http (default true)")
      ->expected(0, 1)
      ->default_str("true");
  app.add_option("--cert-dir", cert_dir, "directory of *.crt CAs and *.cert/*.key client certs");
  app.add_flag("--get-login", get_login, "print the user name stored for REGISTRY and exit");
  try {
    app.parse(argc, argv);
    if (password_stdin && !password.empty())
      throw CLI::ValidationError("--password-stdin", "cannot be combined with --password");
    if (tls_verify != "true" && tls_verify != "false" && !tls_verify.empty())
      throw CLI::ValidationError("--tls-verify", "takes true or false");
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  auto key = registry::normalize_registry_key(registry_arg);
  if (!key) return report(key.error());
  std::string host = key->substr(0, key->find('/'));
  std::optional<std::string> explicit_file;
  if (!authfile.empty()) explicit_file = authfile;
  std::string file = registry::auth_file_for_writing(explicit_file);

  if (get_login) {
    auto found = registry::lookup_credentials(
        {file}, host, key->size() > host.size() ? key->substr(host.size() + 1) : std::string());
    if (!found) return report(found.error());
    if (!*found) {
      fmt::print(stderr, "cfs: error: not logged into {}\n", *key);
      return kExitFailure;
    }
    fmt::print("{}\n", (*found)->creds.username);
    return kExitOk;
  }
  if (username.empty()) username = prompt("Username: ", false);
  if (password_stdin) {
    std::getline(std::cin, password);
  } else if (password.empty()) {
    password = prompt("Password: ", true);
  }
  if (username.empty() || password.empty()) {
    fmt::print(stderr, "cfs: error: login needs a user name and a password\n");
    return kExitUsage;
  }
  registry::ClientOptions opts;
  opts.tls.verify = tls_verify != "false";
  if (!cert_dir.empty()) opts.tls.cert_dir = cert_dir;
  opts.creds = registry::Credentials{username, password};
  opts.creds_from = "the login command";
  opts.user_agent = "cfs/" CFS_VERSION;
  std::optional<Interrupts> interrupts;
  opts.cancel = stop_on_signals(interrupts);
  auto client = registry::Client::create(std::move(opts));
  if (!client) return report(client.error());
  if (auto st = client->check_login(host); !st) {
    if (interrupts->signal())
      return interrupts->report(fmt::format(
          "the login to {} stopped before the registry answered: no credentials were stored",
          host));
    return report(st.error());
  }
  if (auto st = registry::store_credentials(file, *key, {username, password}); !st)
    return report(st.error());
  fmt::print("Login Succeeded!\n");
  return kExitOk;
}

int run_logout(int argc, char** argv) {
  CLI::App app{"Remove stored registry credentials from auth.json.", "cfs logout"};
  std::string registry_arg, authfile;
  bool all = false;
  app.add_option("REGISTRY", registry_arg, "HOST[:PORT] (optionally /NAMESPACE...)");
  app.add_option("--authfile", authfile,
                 "auth file to change (default: $REGISTRY_AUTH_FILE, else "
                 "$XDG_RUNTIME_DIR/containers/auth.json)");
  app.add_flag("-a,--all", all, "remove the credentials of every registry");
  try {
    app.parse(argc, argv);
    if (all == !registry_arg.empty())
      throw CLI::ValidationError("REGISTRY", "give a registry or --all (one of them)");
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  std::optional<std::string> explicit_file;
  if (!authfile.empty()) explicit_file = authfile;
  std::string file = registry::auth_file_for_writing(explicit_file);
  if (all) {
    if (auto st = registry::remove_all_credentials(file); !st) return report(st.error());
    fmt::print("Removed login credentials for all registries\n");
    return kExitOk;
  }
  auto key = registry::normalize_registry_key(registry_arg);
  if (!key) return report(key.error());
  auto removed = registry::remove_credentials(file, *key);
  if (!removed) return report(removed.error());
  if (!*removed) {
    fmt::print(stderr, "cfs: error: not logged into {} (in {})\n", *key, file);
    return kExitFailure;
  }
  fmt::print("Removed login credentials for {}\n", *key);
  return kExitOk;
}

}  // namespace

CFS_REGISTER_COMMAND("login", "store registry credentials (checked first) in auth.json", run_login);
CFS_REGISTER_COMMAND("logout", "remove stored registry credentials", run_logout);

}  // namespace cfs::tools
