# SPDX-License-Identifier: Apache-2.0
"""Loopback registry harness for the registry tests (stdlib only).

* Registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a free port and a
  generated config: plain HTTP, htpasswd Basic auth, Bearer tokens from TokenServer, TLS with a
  self-signed CA (optionally requiring client certificates). Started by the test, stopped by
  PID, its directory removed, whatever happens.
* TokenServer: the token endpoint distribution's `auth: token:` expects (the registry ships
  none). Issues RS256 JWTs signed with `openssl dgst`, carrying the signing certificate in the
  x5c header, which the registry checks against its rootcertbundle.
* FaultProxy (fault_proxy.py): an HTTP proxy in front of a registry that injects faults and logs
  every request with the Range it asked for.
* OCI images built with umoci and pushed with skopeo, the independent oracles.
"""
import base64
import contextlib
import hashlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cfs_testlib as t
from fault_proxy import FaultProxy  # noqa: F401  (re-exported for the tests)

REGISTRY_BIN = "/usr/bin/docker-registry"


def require_tools(*names):
    """Skips (exit 77) unless every program is installed."""
    for n in names:
        if not shutil.which(n):
            t.skip(f"{n} not installed (see scripts/install-deps.sh)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_bytes(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def openssl(*args, cwd=None):
    subprocess.run(["openssl", *args], check=True, cwd=cwd, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_ca(d):
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, all signed
    by the CA (EC P-256: instant to generate). Returns a dict of paths."""
    p = {k: os.path.join(d, k) for k in ("ca.key", "ca.crt", "server.key", "server.crt",
                                         "client.key", "client.cert")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.crt"], "-days", "2",
            "-subj", "/CN=cfs test CA")
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for who, subj, extfile in (("server", "/CN=127.0.0.1", ext), ("client", "/CN=cfs-client", None)):
        key = p[f"{who}.key"]
        crt = p["server.crt"] if who == "server" else p["client.cert"]
        csr = os.path.join(d, f"{who}.csr")
        openssl("req", *ec, "-keyout", key, "-out", csr, "-subj", subj)
        openssl("x509", "-req", "-in", csr, "-CA", p["ca.crt"], "-CAkey", p["ca.key"],
                "-CAcreateserial", "-out", crt, "-days", "2",
                *(["-extfile", extfile] if extfile else []))
    return p


def htpasswd_file(path, users):
    with open(path, "w") as f:
        for user, pw in users.items():
            out = subprocess.run(["htpasswd", "-Bbn", user, pw], check=True,
                                 capture_output=True, text=True).stdout
            f.write(out.strip() + "\n")


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Bearer token endpoint: GET /token?service=S&scope=repository:NAME:ACTIONS...

    Users in `users` (Basic auth) get every action they ask for; anonymous requests get the
    actions in `anonymous` ("pull" or nothing). Wrong credentials get 401. Every request is
    logged as (user or None, [scopes])."""

    def __init__(self, workdir, users, anonymous=(), service="cfs-test", issuer="cfs-test-issuer",
                 expires_in=300):
        self.users = dict(users)
        self.anonymous = set(anonymous)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.log = []
        self.key = os.path.join(workdir, "token.key")
        self.cert = os.path.join(workdir, "token.crt")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out",
                self.cert, "-days", "2", "-subj", "/CN=cfs token signer")
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                server._handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode())).encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input,
                             check=True, capture_output=True).stdout
        return signing_input.decode() + "." + _b64url(sig)

    def _handle(self, h):
        url = urllib.parse.urlparse(h.path)
        q = urllib.parse.parse_qs(url.query)
        scopes = q.get("scope", [])
        user = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                user, pw = "", None
            if self.users.get(user) != pw:
                self.log.append(("<refused>", scopes))
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                body = b'{"details":"bad credentials"}'
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
                return
        self.log.append((user, scopes))
        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) < 3:
                continue
            want = parts[-1].split(",")
            granted = want if user else [a for a in want if a in self.anonymous]
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": granted})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        token = self.sign(claims)
        body = json.dumps({"token": token, "expires_in": self.expires_in}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


# A registry runs in a session of its own (a test's Ctrl-C is not its), so a test or benchmark
# killed before its stop() (SIGKILL, or a SIGTERM Python does not turn into an exception) would
# leave it running: a stray registry is what bench/lazy_link.py's search for the registry
# process then measures. setpriv execs it with its parent's death as SIGTERM (PR_SET_PDEATHSIG;
# the "parent" is the thread that started it, so start a Registry on a thread that outlives it).
_DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []


class Registry:
    """docker-registry on 127.0.0.1:<free port>. Use as a context manager (or start()/stop()).

    tls: serve https with a certificate from a generated CA (self.ca has the paths; the CA is
         also in self.cert_dir as ca.crt, the layout --cert-dir expects);
    client_certs: with tls, also require a client certificate signed by the CA (self.cert_dir
         then holds client.cert/client.key too);
    users: {user: password} for htpasswd Basic auth;
    token: a TokenServer for Bearer auth;
    access_log: log every request (combined log format) to read_log()."""

    def __init__(self, tls=False, client_certs=False, users=None, token=None, access_log=False):
        self.tls = tls
        self.access_log = access_log  # one combined-format line per request in read_log()
        self.client_certs = client_certs
        self.users = users
        self.token = token
        self.proc = None
        self.dir = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def ref(self, name):
        return f"docker://{self.host}/{name}"

    @property
    def blob_root(self):
        return os.path.join(self.dir, "data", "docker", "registry", "v2", "blobs")

    def blob_path(self, digest):
        alg, hexd = digest.split(":")
        return os.path.join(self.blob_root, alg, hexd[:2], hexd, "data")

    def _config(self):
        off = "false" if self.access_log else "true"
        lines = ["version: 0.1",
                 f"log: {{level: warn, accesslog: {{disabled: {off}}}, fields: {{service: registry}}}}",
                 "storage:",
                 f"  filesystem: {{rootdirectory: {self.dir}/data}}",
                 "  delete: {enabled: true}",
                 "  cache: {blobdescriptor: inmemory}",
                 "http:",
                 f"  addr: {self.host}",
                 "  headers: {X-Content-Type-Options: [nosniff]}"]
        if self.tls:
            lines += ["  tls:",
                      f"    certificate: {self.ca['server.crt']}",
                      f"    key: {self.ca['server.key']}"]
            if self.client_certs:
                lines += [f"    clientcas: [{self.ca['ca.crt']}]"]
        if self.users:
            path = os.path.join(self.dir, "htpasswd")
            htpasswd_file(path, self.users)
            lines += ["auth:", f"  htpasswd: {{realm: cfs-test, path: {path}}}"]
        elif self.token:
            tk = self.token
            lines += ["auth:", "  token:", f"    realm: {tk.realm}", f"    service: {tk.service}",
                      f"    issuer: {tk.issuer}", f"    rootcertbundle: {tk.cert}"]
        return "\n".join(lines) + "\n"

    def start(self):
        if not os.path.exists(REGISTRY_BIN):
            t.skip("docker-registry not installed (Debian package docker-registry)")
        self.dir = tempfile.mkdtemp(prefix="cfs-registry-")
        try:
            if self.tls:
                self.ca = make_ca(self.dir)
                self.cert_dir = os.path.join(self.dir, "certs.d")
                os.mkdir(self.cert_dir)
                shutil.copy(self.ca["ca.crt"], self.cert_dir)
                if self.client_certs:
                    shutil.copy(self.ca["client.cert"], self.cert_dir)
                    shutil.copy(self.ca["client.key"], self.cert_dir)
            for _ in range(5):  # the free port may be taken between probing and binding
                self.port = free_port()
                cfg = os.path.join(self.dir, "config.yml")
                with open(cfg, "w") as f:
                    f.write(self._config())
                self.log_path = os.path.join(self.dir, "registry.log")
                with open(self.log_path, "wb") as log:
                    self.proc = subprocess.Popen([*_DIE_WITH_PARENT, REGISTRY_BIN, "serve", cfg],
                                                 stdout=log,
                                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                 start_new_session=True)
                if self._wait_ready():
                    return
                self._kill()
            raise RuntimeError(f"docker-registry did not start:\n{self.read_log()}")
        except BaseException:
            self.stop()
            raise

    def read_log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.tls:
                    ctx = ssl.create_default_context(cafile=self.ca["ca.crt"])
                    if self.client_certs:
                        ctx.load_cert_chain(self.ca["client.cert"], self.ca["client.key"])
                    conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2, context=ctx)
                else:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                conn.close()
                return True
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
        return False

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self._kill()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


# ---- images (umoci) and the skopeo oracle -------------------------------------------------------

def run(args, **kw):
    return t.run(args, **kw)


def skopeo(*args, check=True):
    """skopeo with a private auth file so the host's credentials never leak in."""
    return run(["skopeo", *args], check=check)


def build_image(layout, tag, layers, config=None):
    """An OCI image layout at `layout` (created) with one layer per dict in `layers`
    ({relative path: bytes}), built with umoci. Returns nothing; skopeo reads it as
    oci:LAYOUT:TAG."""
    if not os.path.exists(os.path.join(layout, "oci-layout")):
        run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:{tag}"])
    with tempfile.TemporaryDirectory(prefix="cfs-layer-") as work:
        for i, files in enumerate(layers):
            root = os.path.join(work, f"l{i}")
            for rel, data in files.items():
                p = os.path.join(root, rel)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(data)
            run(["umoci", "insert", "--image", f"{layout}:{tag}", root, "/"])
    if config:
        run(["umoci", "config", "--image", f"{layout}:{tag}", *config])


def push(layout, tag, dest_ref, *opts):
    """skopeo copy oci:LAYOUT:TAG DEST (opts e.g. --dest-tls-verify=false, --format v2s2)."""
    skopeo("copy", "--quiet", *opts, f"oci:{layout}:{tag}", dest_ref)


def inspect_raw(ref, *opts):
    return skopeo("inspect", "--raw", *opts, ref).stdout


def layout_blob(layout, digest):
    alg, hexd = digest.split(":")
    with open(os.path.join(layout, "blobs", alg, hexd), "rb") as f:
        return f.read()


@contextlib.contextmanager
def isolated_auth_env():
    """HOME, XDG_RUNTIME_DIR and XDG_CONFIG_HOME pointing into a fresh directory, and no
    REGISTRY_AUTH_FILE / DOCKER_CONFIG, so no real credentials are read or written. Yields
    the directory and the env dict to pass to cfs/skopeo."""
    with t.tempdir() as d:
        env = dict(os.environ)
        for k in ("REGISTRY_AUTH_FILE", "DOCKER_CONFIG"):
            env.pop(k, None)
        env.update(HOME=os.path.join(d, "home"), XDG_RUNTIME_DIR=os.path.join(d, "run"),
                   XDG_CONFIG_HOME=os.path.join(d, "config"))
        for k in ("HOME", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
            os.makedirs(env[k], mode=0o700)
        yield d, env


# The compact object index (docs/registry.md "Lazy metadata"), read and written here from the
# format's description, apart from cfs's code: the tests' oracle for what a push carries in its
# artifact's annotation, and the way they tamper with it.
COMPACT_INDEX_ANNOTATION = "vnd.cfs.object-index.v2+zstd"
IMAGE_CONFIG_ANNOTATION = "vnd.cfs.image-config"
COMPACT_FRAME_MAGIC = 0x184D2A5E  # a zstd skippable frame (RFC 8878 3.1.2)


def compact_index_frame(blob, annotations):
    """(the EROFS blob without it, the zstd compact document) of the skippable frame an EROFS
    blob ends with, whose payload size the layer's annotation gives."""
    n = int(annotations[COMPACT_INDEX_ANNOTATION])
    frame = blob[len(blob) - n - 8:]
    magic, size = struct.unpack("<II", frame[:8])
    assert (magic, size) == (COMPACT_FRAME_MAGIC, n), (hex(magic), size, n)
    return blob[:len(blob) - n - 8], frame[8:]


def compact_index_frame_bytes(payload):
    return struct.pack("<II", COMPACT_FRAME_MAGIC, len(payload)) + payload


def _leb(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


class _Cursor:
    """Reads a document of LEB128 varints and byte strings from the front."""

    def __init__(self, doc):
        self.doc, self.pos = doc, 0

    def varint(self):
        v = shift = 0
        while True:
            b = self.doc[self.pos]
            self.pos += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v

    def take(self, n):
        self.pos += n
        return self.doc[self.pos - n:self.pos]


def compact_index_decode(doc):
    """The compact document as a dict: algorithm, image (hex), layers [{digest, diffId, size,
    mediaType, rangeFetchable}], objects [{nid, layer, compression, offset, length, size}] in
    the document's (nid) order."""
    cur = _Cursor(doc)
    varint, take = cur.varint, cur.take
    assert take(8) == b"cfs-oidx"
    assert varint() == 2
    alg = {1: "sha256", 2: "sha512"}[take(1)[0]]
    out = {"algorithm": alg, "image": take(32 if alg == "sha256" else 64).hex(), "layers": []}
    for _ in range(varint()):
        layer = {}
        for k in ("digest", "diffId"):
            layer[k] = take(varint()).decode()
        layer["size"] = varint()
        layer["mediaType"] = take(varint()).decode()
        layer["rangeFetchable"] = take(1)[0] == 1
        out["layers"].append(layer)
    n = varint()
    objects = [{} for _ in range(n)]
    nid = 0
    for i, o in enumerate(objects):
        nid = varint() + (nid if i else 0)
        o["nid"] = nid
    for o in objects:
        v = varint()
        o["layer"], o["compression"] = v >> 1, "zstd" if v & 1 else "none"
    for o in objects:
        o["size"] = o["length"] = varint()
    for o in objects:
        if o["compression"] == "zstd":
            o["length"] = varint()
    cursor = {}
    for o in objects:
        z = varint()
        delta = (z >> 1) ^ -(z & 1)
        o["offset"] = (cursor.get(o["layer"], 0) + delta) % (1 << 64)
        cursor[o["layer"]] = o["offset"] + o["length"]
    assert cur.pos == len(doc), (cur.pos, len(doc))
    out["objects"] = objects
    return out


def compact_index_encode(ix):
    """The document of a dict as compact_index_decode returns it (objects in nid order)."""
    out = bytearray(b"cfs-oidx" + _leb(2))
    out.append(1 if ix["algorithm"] == "sha256" else 2)
    out += bytes.fromhex(ix["image"])
    out += _leb(len(ix["layers"]))
    for layer in ix["layers"]:
        for k in ("digest", "diffId"):
            out += _leb(len(layer[k])) + layer[k].encode()
        out += _leb(layer["size"]) + _leb(len(layer["mediaType"])) + layer["mediaType"].encode()
        out.append(1 if layer["rangeFetchable"] else 0)
    objects = ix["objects"]
    out += _leb(len(objects))
    prev = 0
    for i, o in enumerate(objects):
        out += _leb(o["nid"] - prev if i else o["nid"])
        prev = o["nid"]
    for o in objects:
        out += _leb(o["layer"] << 1 | (o["compression"] == "zstd"))
    for o in objects:
        out += _leb(o["size"])
    for o in objects:
        if o["compression"] == "zstd":
            out += _leb(o["length"])
    cursor = {}
    for o in objects:
        delta = (o["offset"] - cursor.get(o["layer"], 0)) % (1 << 64)
        out += _leb(((delta << 1) ^ (-(delta >> 63) % (1 << 64))) % (1 << 64))
        cursor[o["layer"]] = o["offset"] + o["length"]
    return bytes(out)


# The slim EROFS blob (docs/registry.md "Slim EROFS"), read and written here from the format's
# description, apart from cfs's code: the tests' oracle for what a push attaches and the way
# they tamper with it.
SLIM_ARTIFACT_TYPE = "application/vnd.cfs.lazy-metadata.v2"
SLIM_EROFS_TYPE = "application/vnd.cfs.composefs.erofs-slim.v1+zstd"
REDIRECT_TABLE_ANNOTATION = "vnd.cfs.redirect-table.v1+zstd"
REDIRECT_FRAME_MAGIC = 0x184D2A5D


def slim_blob_parts(blob, annotations):
    """(the redirect table's zstd frame, the EROFS's zstd frame, the compact index's zstd
    frame) of a slim EROFS blob, each frame's payload without its skippable header."""
    t = int(annotations[REDIRECT_TABLE_ANNOTATION])
    magic, size = struct.unpack("<II", blob[:8])
    assert (magic, size) == (REDIRECT_FRAME_MAGIC, t), (hex(magic), size, t)
    rest, compact = compact_index_frame(blob[8 + t:], annotations)
    return blob[8:8 + t], rest, compact


def slim_blob_bytes(table_z, erofs_z, compact_z):
    return (struct.pack("<II", REDIRECT_FRAME_MAGIC, len(table_z)) + table_z + erofs_z +
            compact_index_frame_bytes(compact_z))


def redirect_table_decode(doc):
    """(digest size n, [(value offset, digest offset)]) of a redirect table document."""
    cur = _Cursor(doc)
    varint = cur.varint
    assert cur.take(8) == b"cfs-rdir", doc[:8]
    assert varint() == 1
    n = {1: 32, 2: 64}[varint()]
    count = varint()
    values, end = [], 0
    for _ in range(count):
        values.append(end + varint())
        end = values[-1] + 2 * n + 2
    entries = [(v, v - varint()) for v in values]
    assert cur.pos == len(doc), (cur.pos, len(doc))
    return n, entries


def redirect_table_encode(n, entries):
    out = bytearray(b"cfs-rdir" + _leb(1) + _leb(1 if n == 32 else 2) + _leb(len(entries)))
    end = 0
    for v, _ in entries:
        out += _leb(v - end)
        end = v + 2 * n + 2
    for v, d in entries:
        out += _leb(v - d)
    return bytes(out)


def redirect_rebuild(erofs, doc):
    """The EROFS with each value the table lists written as "/" + 2 hex + "/" + the rest of
    the digest at its digest offset (each value must be zeros)."""
    n, entries = redirect_table_decode(doc)
    out = bytearray(erofs)
    for v, d in entries:
        assert out[v:v + 2 * n + 2] == bytes(2 * n + 2), v
        h = bytes(out[d:d + n]).hex()
        out[v:v + 2 * n + 2] = ("/" + h[:2] + "/" + h[2:]).encode()
    return bytes(out)
