#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ctest-labels: integration;registry
# ctest-timeout: 300
"""Authentication and TLS of cfs's registry client against docker-registry 2.8 on loopback:
htpasswd Basic auth, Bearer tokens (the test's token server, JWTs checked by the registry), TLS
with a self-signed CA through --cert-dir, client certificates, --tls-verify=false. skopeo is the
oracle for the credential files: it reads what `cfs login` wrote, and cfs reads what
`skopeo login` wrote."""
import base64
import contextlib
import json
import os
import shutil
import unittest

import cfs_registry as r
import cfs_testlib as t

NOTLS = "--tls-verify=false"
FAST = ["--retry-times", "1", "--retry-delay", "0.01"]
USERS = {"alice": "wonderland", "bob": "builder"}


def cfs(*args, env=None, check=True, input=None):
    return t.run([t.tool("cfs"), *args], env=env, check=check, input=input)


def auth_json(path, entries):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({"auths": {k: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()}
                             for k, (u, p) in entries.items()}}, f)


class Fixture(unittest.TestCase):
    """One registry per class, an image pushed by skopeo, an isolated HOME/XDG environment."""
    registry_args = {}
    repo = "cfs/private"

    @classmethod
    def setUpClass(cls):
        r.require_tools("skopeo", "umoci", "htpasswd", "openssl")
        cls.stack = contextlib.ExitStack()
        cls.tmp, cls.env = cls.stack.enter_context(r.isolated_auth_env())
        cls.layout = os.path.join(cls.tmp, "img")
        r.build_image(cls.layout, "v1", [{"etc/motd": b"private\n"}])
        cls.setup_registry()
        cls.ref = cls.reg.ref(cls.repo + ":v1")
        cls.manifest = r.skopeo("inspect", "--raw", *cls.skopeo_src_opts(), cls.ref).stdout

    @classmethod
    def setup_registry(cls):
        cls.reg = cls.stack.enter_context(r.Registry(**cls.registry_args))
        r.push(cls.layout, "v1", cls.reg.ref(cls.repo + ":v1"), NOTLS.replace("--", "--dest-"),
               "--dest-creds", "alice:wonderland")

    @classmethod
    def skopeo_src_opts(cls):
        return [NOTLS, "--creds", "alice:wonderland"]

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def get_manifest(self, *opts, env=None, check=True):
        return cfs("registry", "get-manifest", *FAST, *opts, self.ref, env=env or self.env,
                   check=check)


def requests_logged(reg, before=0):
    """(method, path, status) of each request docker-registry logged (its access log), from
    line `before` on."""
    out = []
    for line in reg.read_log().splitlines()[before:]:
        try:
            request = line.split('"')[1]
            status = int(line.split('"')[2].split()[0])
        except (IndexError, ValueError):
            continue  # not an access-log line
        method, path = request.split()[:2]
        out.append((method, path, status))
    return out


class BasicAuth(Fixture):
    registry_args = {"users": USERS, "access_log": True}

    def test_the_first_request_learns_the_challenge_without_a_ping(self):
        # No GET /v2/ before the manifest's: its 401 carries the challenge a ping would have
        # brought, and the request is answered once more with the credentials. Without TLS
        # verification the https attempt comes first (refused below HTTP: the registry does not
        # log it) and the error of a missing tag names the plain http URL that was asked.
        before = len(self.reg.read_log().splitlines())
        self.assertEqual(self.get_manifest(NOTLS, "--creds", "alice:wonderland").stdout,
                         self.manifest)
        path = f"/v2/{self.repo}/manifests/v1"
        self.assertEqual(requests_logged(self.reg, before), [("GET", path, 401), ("GET", path, 200)])
        before = len(self.reg.read_log().splitlines())
        p = cfs("registry", "get-manifest", *FAST, NOTLS, "--creds", "alice:wonderland",
                self.reg.ref(self.repo + ":nope"), env=self.env, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn(f"GET http://{self.reg.host}/v2/{self.repo}/manifests/nope: HTTP 404",
                      p.stderr.decode())
        path = f"/v2/{self.repo}/manifests/nope"
        self.assertEqual(requests_logged(self.reg, before), [("GET", path, 401), ("GET", path, 404)])

    def test_anonymous_is_refused_with_a_hint(self):
        p = self.get_manifest(NOTLS, check=False)
        self.assertEqual(p.returncode, 1)
        err = p.stderr.decode()
        self.assertIn("HTTP 401", err)
        self.assertIn("no credentials", err)
        self.assertEqual(p.stdout, b"")

    def test_creds_option(self):
        self.assertEqual(self.get_manifest(NOTLS, "--creds", "alice:wonderland").stdout, self.manifest)
        p = self.get_manifest(NOTLS, "--creds", "alice:wrong", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("HTTP 401", p.stderr.decode())
        self.assertIn("credentials of alice from --creds", p.stderr.decode())

    def test_credential_files_in_lookup_order(self):
        home = self.env["HOME"]
        primary = os.path.join(self.env["XDG_RUNTIME_DIR"], "containers", "auth.json")
        config = os.path.join(self.env["XDG_CONFIG_HOME"], "containers", "auth.json")
        docker = os.path.join(home, ".docker", "config.json")
        explicit = os.path.join(self.tmp, "explicit.json")
        host = self.reg.host
        cases = [
            ("docker config.json", {docker: {host: USERS_PAIR("bob")}}, {}),
            ("docker URL key", {docker: {f"https://{host}/v1/": USERS_PAIR("bob")}}, {}),
            ("XDG_CONFIG_HOME file", {config: {host: USERS_PAIR("alice")}}, {}),
            ("primary file", {primary: {host: USERS_PAIR("alice")}}, {}),
            # The primary file wins over docker's, even when docker's is right and it is not.
            ("primary before docker", {primary: {host: ("alice", "bad")},
                                       docker: {host: USERS_PAIR("bob")}}, "fail"),
            # The most specific key wins within a file.
            ("namespace key", {primary: {host: ("alice", "bad"), f"{host}/cfs": USERS_PAIR("bob")}}, {}),
            ("REGISTRY_AUTH_FILE", {explicit: {host: USERS_PAIR("bob")}},
             {"REGISTRY_AUTH_FILE": explicit}),
        ]
        for name, files, extra in cases:
            with self.subTest(case=name):
                for f in (primary, config, docker, explicit):
                    if os.path.exists(f):
                        os.unlink(f)
                for path, entries in files.items():
                    auth_json(path, entries)
                env = dict(self.env, **(extra if isinstance(extra, dict) else {}))
                p = self.get_manifest(NOTLS, env=env, check=False)
                if extra == "fail":
                    self.assertEqual(p.returncode, 1)
                    self.assertIn(f"from {primary}", p.stderr.decode())
                else:
                    self.assertEqual(p.returncode, 0, p.stderr.decode())
                    self.assertEqual(p.stdout, self.manifest)
        for f in (primary, config, docker, explicit):
            if os.path.exists(f):
                os.unlink(f)
        # --authfile names the file directly.
        auth_json(explicit, {host: USERS_PAIR("alice")})
        self.assertEqual(self.get_manifest(NOTLS, "--authfile", explicit).stdout, self.manifest)
        os.unlink(explicit)

    def test_login_logout_interoperate_with_skopeo(self):
        authfile = os.path.join(self.tmp, "login.json")
        env = dict(self.env, REGISTRY_AUTH_FILE=authfile)
        host = self.reg.host
        # A wrong password is refused by the registry and nothing is written.
        p = cfs("login", NOTLS, "-u", "alice", "-p", "wrong", host, env=env, check=False)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("HTTP 401", p.stderr.decode())
        # The credentials are named as given (-u/-p), not as --creds, which login does not take.
        self.assertIn("(credentials of alice from the login command)", p.stderr.decode())
        self.assertFalse(os.path.exists(authfile))
        p = cfs("login", NOTLS, "-u", "alice", "--password-stdin", host, env=env,
                input=b"wonderland\n")
        self.assertIn(b"Login Succeeded", p.stdout)
        self.assertEqual(os.stat(authfile).st_mode & 0o777, 0o600)
        # skopeo reads what cfs wrote ...
        self.assertEqual(r.skopeo("inspect", "--raw", NOTLS, "--authfile", authfile, self.ref).stdout,
                         self.manifest)
        self.assertEqual(cfs("login", "--get-login", host, env=env).stdout.decode().strip(), "alice")
        self.assertEqual(self.get_manifest(NOTLS, env=env).stdout, self.manifest)
        # ... and cfs logout removes it for skopeo too.
        self.assertIn(b"Removed login credentials", cfs("logout", host, env=env).stdout)
        p = r.skopeo("inspect", "--raw", NOTLS, "--authfile", authfile, self.ref, check=False)
        self.assertNotEqual(p.returncode, 0)
        p = cfs("logout", host, env=env, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("not logged into", p.stderr.decode())
        # skopeo login writes; cfs reads it and logs out of everything.
        r.skopeo("login", NOTLS, "--authfile", authfile, "-u", "bob", "-p", "builder", host)
        self.assertEqual(self.get_manifest(NOTLS, env=env).stdout, self.manifest)
        cfs("logout", "--all", env=env)
        self.assertEqual(self.get_manifest(NOTLS, env=env, check=False).returncode, 1)

    def test_login_default_file_is_the_runtime_dir(self):
        host = self.reg.host
        cfs("login", NOTLS, "-u", "bob", "-p", "builder", host, env=self.env)
        primary = os.path.join(self.env["XDG_RUNTIME_DIR"], "containers", "auth.json")
        with open(primary) as f:
            entry = json.load(f)["auths"][host]["auth"]
        self.assertEqual(base64.b64decode(entry), b"bob:builder")
        self.assertEqual(self.get_manifest(NOTLS).stdout, self.manifest)
        cfs("logout", host, env=self.env)

    def test_push_needs_credentials(self):
        blob = os.path.join(self.tmp, "blob")
        with open(blob, "wb") as f:
            f.write(b"pushed with basic auth")
        t.expect_cli_error(self, ["registry", "put-blob", NOTLS, *FAST, self.ref, blob], 1, "HTTP 401")
        out = cfs("registry", "put-blob", NOTLS, "--creds", "bob:builder", self.ref, blob,
                  env=self.env).stdout.decode().split()
        self.assertEqual(out[1], "uploaded")
        self.assertEqual(cfs("registry", "get-blob", NOTLS, "--creds", "bob:builder", self.ref,
                             out[0], env=self.env).stdout, b"pushed with basic auth")


def USERS_PAIR(user):
    return (user, USERS[user])


class BearerAuth(Fixture):
    @classmethod
    def setup_registry(cls):
        cls.token = r.TokenServer(cls.tmp, USERS)
        cls.stack.callback(cls.token.close)
        cls.reg = cls.stack.enter_context(r.Registry(token=cls.token, access_log=True))
        r.push(cls.layout, "v1", cls.reg.ref(cls.repo + ":v1"), "--dest-tls-verify=false",
               "--dest-creds", "alice:wonderland")

    def test_token_flow(self):
        self.token.log.clear()
        before = len(self.reg.read_log().splitlines())
        self.assertEqual(self.get_manifest(NOTLS, "--creds", "bob:builder").stdout, self.manifest)
        # One token, of the pull scope, asked once the manifest's 401 named the realm (no ping).
        self.assertEqual(self.token.log, [("bob", [f"repository:{self.repo}:pull"])])
        path = f"/v2/{self.repo}/manifests/v1"
        self.assertEqual(requests_logged(self.reg, before), [("GET", path, 401), ("GET", path, 200)])

    def test_anonymous_token_without_access(self):
        p = self.get_manifest(NOTLS, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("HTTP 401", p.stderr.decode())

    def test_wrong_password_names_the_token_server(self):
        p = self.get_manifest(NOTLS, "--creds", "bob:nope", check=False)
        self.assertEqual(p.returncode, 1)
        err = p.stderr.decode()
        self.assertIn("token server", err)
        self.assertIn(self.token.realm, err)
        self.assertIn("bob", err)

    def test_push_asks_for_push_scope_and_mount_source(self):
        blob = os.path.join(self.tmp, "tblob")
        with open(blob, "wb") as f:
            f.write(b"bearer blob")
        self.token.log.clear()
        out = cfs("registry", "put-blob", NOTLS, "--creds", "alice:wonderland", self.ref, blob,
                  env=self.env).stdout.decode().split()
        self.assertEqual(out[1], "uploaded")
        self.assertIn(("alice", [f"repository:{self.repo}:pull,push"]), self.token.log)
        self.token.log.clear()
        other = self.reg.ref("cfs/other:v1")
        out = cfs("registry", "put-blob", NOTLS, "--creds", "alice:wonderland", "--mount-from",
                  self.repo, other, blob, env=self.env).stdout.decode().split()
        self.assertEqual(out[1], "mounted")
        self.assertIn(("alice", ["repository:cfs/other:pull,push", f"repository:{self.repo}:pull"]),
                      self.token.log)


class Tls(Fixture):
    registry_args = {"tls": True}

    @classmethod
    def skopeo_src_opts(cls):
        return ["--cert-dir", cls.reg.cert_dir]

    @classmethod
    def setup_registry(cls):
        cls.reg = cls.stack.enter_context(r.Registry(**cls.registry_args))
        r.push(cls.layout, "v1", cls.reg.ref(cls.repo + ":v1"), "--dest-cert-dir", cls.reg.cert_dir)

    def test_cert_dir_ca(self):
        self.assertEqual(self.get_manifest("--cert-dir", self.reg.cert_dir).stdout, self.manifest)

    def test_unknown_ca_is_refused(self):
        p = self.get_manifest(check=False)
        self.assertEqual(p.returncode, 1)
        err = p.stderr.decode()
        self.assertIn("https://" + self.reg.host, err)
        self.assertIn("certificate", err)

    def test_tls_verify_false_skips_verification(self):
        self.assertEqual(self.get_manifest(NOTLS).stdout, self.manifest)

    def test_tls_verify_false_still_speaks_https(self):
        # The first request finds the scheme (no ping): a registry that speaks https is spoken
        # to over https, as skopeo would; its own answer (404) is the error, naming the URL.
        for opts in ([NOTLS, "--cert-dir", self.reg.cert_dir], ["--cert-dir", self.reg.cert_dir]):
            p = cfs("registry", "get-manifest", *FAST, *opts, self.reg.ref(self.repo + ":nope"),
                    env=self.env, check=False)
            self.assertEqual(p.returncode, 1)
            self.assertIn(f"GET https://{self.reg.host}/v2/{self.repo}/manifests/nope: HTTP 404",
                          p.stderr.decode())

    def test_ca_files_are_read_once_per_command(self):
        # A fetch's blobs come on connections of their own; each verified connection's TLS
        # context takes one CA store built once per command (strace is the oracle: the
        # certificate directory's CA file is opened once, however many connections there are).
        r.require_tools("strace")
        trace = os.path.join(self.tmp, "ca.strace")
        layout = os.path.join(self.tmp, "fetched-" + type(self).__name__)
        port = f"htons({self.reg.port})"
        # Whether a blob gets a connection of its own depends on timing (a worker that starts
        # after another's transfer ended reuses its connection): the command is run until one
        # run used two or more, which is what the assertion below is about.
        for _ in range(10):
            shutil.rmtree(layout, ignore_errors=True)
            t.run(["strace", "-f", "-qq", "-e", "trace=openat,connect", "-o", trace,
                   t.tool("cfs"), "registry", "fetch", "--cert-dir", self.reg.cert_dir, self.ref,
                   layout], env=self.env)
            with open(trace) as f:
                lines = f.read().splitlines()
            connects = [x for x in lines if "connect(" in x and port in x]
            if len(connects) >= 2:
                break
        self.assertGreaterEqual(len(connects), 2, connects)
        ca = os.path.join(self.reg.cert_dir, "ca.crt")
        opened = [x for x in lines if f'"{ca}"' in x and "= -1" not in x]
        self.assertEqual(len(opened), 1, opened)

    def test_bad_cert_dir(self):
        t.expect_cli_error(self, ["registry", "get-manifest", "--cert-dir",
                                  os.path.join(self.tmp, "nope"), self.ref], 1, "--cert-dir")


class ClientCertificates(Tls):
    registry_args = {"tls": True, "client_certs": True}

    def test_ca_alone_is_not_enough(self):
        only_ca = os.path.join(self.tmp, "only-ca")
        os.makedirs(only_ca, exist_ok=True)
        shutil.copy(self.reg.ca["ca.crt"], only_ca)
        p = self.get_manifest("--cert-dir", only_ca, check=False)
        self.assertEqual(p.returncode, 1)

    def test_tls_verify_false_skips_verification(self):
        # Without the client certificate the handshake fails even unverified.
        self.assertEqual(self.get_manifest(NOTLS, check=False).returncode, 1)
        self.assertEqual(self.get_manifest(NOTLS, "--cert-dir", self.reg.cert_dir).stdout,
                         self.manifest)


if __name__ == "__main__":
    t.main()
