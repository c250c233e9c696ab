#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A loopback HTTP/1.1 proxy in front of a registry that injects faults and logs requests.

Clients talk to it as if it were the registry (plain HTTP; the Host header is passed through, so
the registry's Location headers point back at the proxy). Each request is forwarded on its own
upstream connection; the response comes back with at most one fault applied:

  status        answer with an HTTP status (500, 429 + Retry-After, ...) without asking upstream
  reply         answer (status, content type, body bytes) without asking upstream: an API the
                registry lacks (a referrers listing), as a registry with it would answer
  drop_after    send the headers and the first N body bytes, then close the connection
  flip          invert one body byte at offset N (of the bytes this response sends)
  length_delta  advertise Content-Length + delta: > 0 sends the real body and closes (the
                client waits for bytes that never come); < 0 sends only that many bytes (the
                client sees a complete, short response)
  throttle_bps  send the body at N bits per second
  delay         wait N seconds before answering
  swallow       forward the request, then close the connection without any answer (the
                registry acted on it; the client cannot know)
  ranges        a request of several byte ranges (`Range: bytes=a-b,c-d`) as a server that
                does not serve them so would: "whole" drops its Range header (the registry
                answers 200 with the whole blob), "coalesce" asks for one range from the first
                byte asked to the last (206 with a single Content-Range); or as a broken server
                would: "junk" forwards it and puts 4 bytes between the first part's data and
                the delimiter after it (a malformed multipart/byteranges body: the parts after
                it cannot be trusted to be where they say); other requests pass

close() is the registry going away: new connections are refused, and kept-alive connections and
answers still being sent end at once.

A fault applies to requests matching a method and a path regex (and, with multi=True, only to
requests of several byte ranges), `times` times (None = always).
A global throttle (bits per second, shared by all connections) models a slow link.
Every request is logged: method, path, Range header, status, body bytes sent, fault.

Standalone (for benchmarks):
  fault_proxy.py --upstream 127.0.0.1:5000 [--port 0] [--throttle-bps N] [--log FILE]
prints "PORT" on stdout once listening and runs until SIGTERM.
"""
import argparse
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "expect"}


class Fault:
    def __init__(self, method=None, path=".*", times=1, multi=False, **action):
        self.method = method
        self.multi = multi
        self.path = re.compile(path)
        self.times = times
        (self.kind, self.arg), = action.items() if len(action) == 1 else [(None, None)]
        self.retry_after = None
        if self.kind == "status" and isinstance(self.arg, tuple):
            self.arg, self.retry_after = self.arg

    def matches(self, method, path, rng=None):
        return ((self.method is None or self.method == method) and self.path.search(path)
                and (not self.multi or "," in (rng or ""))
                and (self.times is None or self.times > 0))


class TokenBucket:
    """Paces bytes to a rate (bits per second); shared by every thread that calls take()."""

    def __init__(self, bps):
        self.rate = bps / 8.0
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def take(self, n):
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)


class FaultProxy:
    def __init__(self, upstream, port=0, throttle_bps=None, log_file=None):
        self.upstream = upstream  # "127.0.0.1:5000"
        self.faults = []
        self.log = []
        self.lock = threading.Lock()
        self.throttle = TokenBucket(throttle_bps) if throttle_bps else None
        self.log_file = open(log_file, "a") if log_file else None
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def ref(self, name):
        return f"docker://{self.host}/{name}"

    def add_fault(self, **kw):
        f = Fault(**kw)
        with self.lock:
            self.faults.append(f)
        return f

    def clear(self):
        with self.lock:
            self.faults.clear()
            self.log.clear()

    def interrupt_held(self, argv, method, path):
        """Runs `argv` with every `method` request to `path` held back 60 s, and sends it SIGINT
        once the first such request has arrived (the command is mid-request). Returns
        (exit status, stdout bytes, stderr text) within a hang detector's 30 s; raises
        AssertionError when the request never came."""
        self.clear()
        self.add_fault(method=method, path=path, times=None, delay=60)
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 30
            while not self.requests(method, path) and time.time() < deadline:
                time.sleep(0.05)
            if not self.requests(method, path):
                raise AssertionError(f"{argv}: never asked for {method} {path}")
            time.sleep(0.3)  # the request is with the proxy, which holds its answer
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=30)  # the hold alone is 60 s
        except BaseException:
            p.kill()
            p.communicate()
            raise
        finally:
            self.clear()
        return p.returncode, out, err.decode()

    def set_throttle(self, bps):
        self.throttle = TokenBucket(bps) if bps else None

    def requests(self, method=None, path=None, since=None):
        """Logged requests (dicts), optionally filtered by method, path substring and start
        time (time.time() before the requests of interest: a connection cut earlier may log
        its request late)."""
        with self.lock:
            return [e for e in self.log if (method is None or e["method"] == method)
                    and (path is None or path in e["path"])
                    and (since is None or e["time"] >= since)]

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.log_file:
            self.log_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- serving ----

    def _accept(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
            # algorithm and the client's delayed ACK add ~40 ms to every response.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _take_fault(self, method, path, rng=None):
        with self.lock:
            for f in self.faults:
                if f.matches(method, path, rng):
                    if f.times is not None:
                        f.times -= 1
                    return f
        return None

    def _begin(self, entry):
        # Logged as soon as the request arrives, and completed in place before the client gets
        # the answer's headers, so a client that has its answer always finds its request here.
        with self.lock:
            self.log.append(entry)

    def _record(self, entry):
        if self.log_file:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def _serve(self, conn):
        rfile = conn.makefile("rb")
        try:
            if rfile.peek(1)[:1] == b"\x16":
                # A TLS ClientHello (a client trying https first): refuse at once, as an HTTP
                # server does, instead of waiting for a request line that never comes.
                return
            while True:
                line = rfile.readline(65536)
                if not line or self.closed:
                    return  # closed: kept-alive connections end too (the registry is gone)
                parts = line.decode("latin-1").split()
                if len(parts) != 3:
                    return
                method, path, _ = parts
                headers = []
                while True:
                    h = rfile.readline(65536)
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers.append((name.strip(), value.strip()))
                lower = {k.lower(): v for k, v in headers}
                if lower.get("expect", "").lower() == "100-continue":
                    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                body = b""
                if "content-length" in lower:
                    body = rfile.read(int(lower["content-length"]))
                elif lower.get("transfer-encoding", "").lower() == "chunked":
                    body = self._read_chunked(rfile)
                keep = self._forward(conn, method, path, headers, lower, body)
                if not keep or lower.get("connection", "").lower() == "close":
                    return
        except (OSError, ValueError):
            return
        finally:
            # The makefile() reader holds the socket open: shut it down explicitly so the
            # client sees the close at once.
            for f in (lambda: conn.shutdown(socket.SHUT_RDWR), rfile.close, conn.close):
                try:
                    f()
                except OSError:
                    pass

    @staticmethod
    def _read_chunked(rfile):
        out = b""
        while True:
            size = int(rfile.readline().split(b";")[0], 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += rfile.read(size)
            rfile.readline()

    def _forward(self, conn, method, path, headers, lower, body):
        """Answers one request; returns whether the client connection may be reused."""
        entry = {"method": method, "path": path, "range": lower.get("range"), "status": None,
                 "sent": 0, "fault": None, "time": time.time()}
        self._begin(entry)
        fault = self._take_fault(method, path, lower.get("range"))
        if fault:
            entry["fault"] = fault.kind
        if fault and fault.kind == "delay":
            time.sleep(fault.arg)
        if fault and fault.kind == "reply":
            status, ctype, payload = fault.arg
            head = f"HTTP/1.1 {status} Reply\r\nContent-Type: {ctype}\r\n"
            head += f"Content-Length: {len(payload)}\r\n"
            entry["status"] = status
            entry["sent"] = len(payload) if method != "HEAD" else 0
            conn.sendall(head.encode() + b"\r\n" + (payload if method != "HEAD" else b""))
            self._record(entry)
            return True
        if fault and fault.kind == "status":
            payload = json.dumps({"errors": [{"code": "INJECTED", "message": "fault proxy"}]}).encode()
            head = f"HTTP/1.1 {fault.arg} Injected\r\nContent-Type: application/json\r\n"
            head += f"Content-Length: {len(payload)}\r\n"
            if fault.retry_after is not None:
                head += f"Retry-After: {fault.retry_after}\r\n"
            entry["status"] = fault.arg
            conn.sendall(head.encode() + b"\r\n" + payload)
            self._record(entry)
            return True
        if fault and fault.kind == "ranges" and "," in lower.get("range", ""):
            spans = [tuple(int(x) for x in part.split("-"))
                     for part in lower["range"].split("=", 1)[1].split(",")]
            headers = [(k, v) for k, v in headers if k.lower() != "range"]
            if fault.arg == "junk":
                headers.append(("Range", lower["range"]))
            elif fault.arg == "coalesce":
                headers.append(("Range", "bytes=%d-%d" % (min(a for a, _ in spans),
                                                         max(b for _, b in spans))))
        up = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            up.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for k, v in headers:
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    up.putheader(k, v)
            if body or method in ("POST", "PUT", "PATCH"):
                up.putheader("Content-Length", str(len(body)))
            up.endheaders(body if body else None)
            resp = up.getresponse()
            entry["status"] = resp.status
            if fault and fault.kind == "swallow":
                resp.read()
                self._record(entry)
                return False
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            length = resp.getheader("Content-Length")
            no_body = method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            if length is None and not no_body:
                data = resp.read()  # chunked upstream: small (JSON) bodies only
                length = str(len(data))
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
                out_headers.append(("Content-Length", length))
                chunks = iter([data])
            else:
                chunks = iter(lambda: resp.read(65536), b"")
            if fault and fault.kind == "ranges" and fault.arg == "junk" and resp.status == 206:
                m = re.search(r"boundary=\"?([^\";]+)", resp.getheader("Content-Type", ""))
                data = resp.read()
                if m:
                    # The delimiter that ends the first part (the first one ends the preamble).
                    delim = b"\r\n--" + m.group(1).encode("latin-1")
                    at = data.find(delim, data.find(b"--" + m.group(1).encode("latin-1")) + 1)
                    if at > 0:
                        data = data[:at] + b"JUNK" + data[at:]
                        entry["fault"] = "junk"
                length = str(len(data))
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
                out_headers.append(("Content-Length", length))
                chunks = iter([data])
            real_len = int(length) if length is not None else 0
            advertised = real_len
            close_after = False
            if fault and fault.kind == "length_delta" and not no_body:
                advertised = real_len + fault.arg
                close_after = True
                out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-length"]
                out_headers.append(("Content-Length", str(advertised)))
            head = f"HTTP/1.1 {resp.status} {resp.reason}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in out_headers)
            if close_after or (fault and fault.kind == "drop_after"):
                head += "Connection: close\r\n"
            conn.sendall(head.encode("latin-1") + b"\r\n")
            if no_body:
                self._record(entry)
                return True
            limit = advertised if advertised < real_len else real_len
            drop_at = fault.arg if fault and fault.kind == "drop_after" else None
            flip_at = fault.arg if fault and fault.kind == "flip" else None
            bucket = TokenBucket(fault.arg) if fault and fault.kind == "throttle_bps" else None
            sent = 0
            for chunk in chunks:
                if sent >= limit:
                    break
                chunk = chunk[:limit - sent]
                if drop_at is not None and sent + len(chunk) > drop_at:
                    chunk = chunk[:drop_at - sent]
                if flip_at is not None and sent <= flip_at < sent + len(chunk):
                    b = bytearray(chunk)
                    b[flip_at - sent] ^= 0xFF
                    chunk = bytes(b)
                for off in range(0, len(chunk), 16384):
                    if self.closed:
                        return False  # the registry is gone: so are its answers in progress
                    piece = chunk[off:off + 16384]
                    if self.throttle:
                        self.throttle.take(len(piece))
                    if bucket:
                        bucket.take(len(piece))
                    conn.sendall(piece)
                    sent += len(piece)
                    entry["sent"] = sent
                if drop_at is not None and sent >= drop_at:
                    self._record(entry)
                    conn.shutdown(socket.SHUT_RDWR)
                    return False
            self._record(entry)
            # An upstream body shorter than its Content-Length (distribution's 416 answers)
            # leaves the client waiting: close, as the registry itself does.
            return not close_after and sent >= limit
        except (OSError, http.client.HTTPException):
            self._record(entry)
            return False
        finally:
            up.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream", required=True, help="registry HOST:PORT")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--throttle-bps", type=float, default=None, help="link speed, bits/s")
    ap.add_argument("--log", default=None, help="append one JSON line per request here")
    args = ap.parse_args()
    proxy = FaultProxy(args.upstream, args.port, args.throttle_bps, args.log)
    print(proxy.port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    stop.wait()
    proxy.close()


if __name__ == "__main__":
    sys.exit(main())
